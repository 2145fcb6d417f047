//! Events from Rust to asyncio: [`EventFeed`] pumps a core event stream into a
//! bounded queue and wakes the Python loop with one `call_soon_threadsafe` per
//! batch (never per event, never from a tokio worker while holding the GIL); the
//! Python side drains the whole batch at once. [`PyEvent`] is what it yields.
//!
//! Bound: `capacity` events; at the bound the oldest queued event is dropped and
//! counted in `missed` (one warning per batch), so a slow Python consumer costs
//! memory up to the bound and never slows the server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures_util::{FutureExt, Stream, StreamExt};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use switchboard::Event;
use tokio::task::AbortHandle;
use tracing::warn;

use crate::convert::{object_to_py, to_py};
use crate::runtime;

/// Every event name, in a fixed order: bit `i` of a feed's mask selects `KINDS[i]`.
pub(crate) const KINDS: [&str; 21] = switchboard::event::EVENT_NAMES;

/// The bit every app type (`app_types`: names the protocol does not define) shares.
const APP_BIT: u32 = 1 << KINDS.len();

/// Mask selecting every kind.
pub(crate) const ALL_KINDS: u32 = (1 << (KINDS.len() + 1)) - 1;

/// The bit of an event name; any name the protocol does not define is an app
/// type (the server's `app_types`, which a client can not know in advance).
fn kind_bit(kind: &str) -> u32 {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(APP_BIT, |i| 1 << i)
}

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Event>,
    /// A wake-up is on its way to the loop (or the consumer has not drained yet).
    notified: bool,
    ended: bool,
    /// Dropping since the last drain (for one warning per batch).
    dropping: bool,
}

/// The loop's `call_soon_threadsafe` and the callback it runs.
#[derive(Debug)]
struct Waker {
    call_soon_threadsafe: Py<PyAny>,
    callback: Py<PyAny>,
}

#[derive(Debug)]
pub(crate) struct FeedShared {
    state: Mutex<State>,
    mask: AtomicU32,
    /// Shared with the source, which adds what it dropped itself.
    missed: Arc<AtomicU64>,
    capacity: usize,
    waker: Mutex<Option<Arc<Waker>>>,
    /// Asks the pump to take what its source has ready, then end.
    finish: tokio::sync::Notify,
}

impl FeedShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event; returns whether the loop must be woken.
    fn push(&self, event: Event) -> bool {
        let mut st = self.lock();
        if st.ended {
            return false;
        }
        if st.events.len() >= self.capacity {
            st.events.pop_front();
            self.missed.fetch_add(1, Ordering::Relaxed);
            if !st.dropping {
                st.dropping = true;
                warn!(
                    capacity = self.capacity,
                    "a Python event consumer fell behind; the oldest events are dropped"
                );
            }
        }
        st.events.push_back(event);
        !std::mem::replace(&mut st.notified, true)
    }

    /// Marks the feed as ended (its source is gone or it was closed).
    pub(crate) fn end(&self) -> bool {
        let mut st = self.lock();
        if st.ended {
            return false;
        }
        st.ended = true;
        !std::mem::replace(&mut st.notified, true)
    }

    /// Hands a wake-up to the loop: on the blocking pool, since it needs the GIL.
    fn wake(self: &Arc<Self>) {
        let Some(waker) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        runtime::spawn_blocking(move || {
            // Not during interpreter shutdown: nothing is waiting any more.
            let _ = Python::try_attach(|py| {
                // A closed loop refuses: its consumer is gone too.
                let _ = waker
                    .call_soon_threadsafe
                    .bind(py)
                    .call1((waker.callback.bind(py),));
            });
        });
    }

    pub(crate) fn end_and_wake(self: &Arc<Self>) {
        if self.end() {
            self.wake();
        }
    }

    /// Ends the feed once the events its source already holds are queued (the
    /// owner stopped: nothing new will come, but nothing produced is lost).
    pub(crate) fn finish(&self) {
        self.finish.notify_one();
    }

    fn accept(self: &Arc<Self>, event: Event) {
        if self.mask.load(Ordering::Relaxed) & kind_bit(event.kind()) != 0 && self.push(event) {
            self.wake();
        }
    }
}

/// A bounded queue of events fed from a core stream, drained by Python.
#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct EventFeed {
    shared: Arc<FeedShared>,
    source: Mutex<Option<BoxedEvents>>,
    task: Mutex<Option<AbortHandle>>,
}

impl std::fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFeed")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl EventFeed {
    /// A feed over `stream`, keeping the kinds in `mask`, not yet started.
    pub(crate) fn new(
        stream: impl Stream<Item = Event> + Send + 'static,
        mask: u32,
        capacity: usize,
    ) -> EventFeed {
        EventFeed::counting(stream, mask, capacity, Arc::default())
    }

    /// [`EventFeed::new`] with a `missed` counter the source also adds to.
    pub(crate) fn counting(
        stream: impl Stream<Item = Event> + Send + 'static,
        mask: u32,
        capacity: usize,
        missed: Arc<AtomicU64>,
    ) -> EventFeed {
        EventFeed {
            shared: Arc::new(FeedShared {
                state: Mutex::new(State::default()),
                mask: AtomicU32::new(mask),
                missed,
                capacity: capacity.max(1),
                waker: Mutex::new(None),
                finish: tokio::sync::Notify::new(),
            }),
            source: Mutex::new(Some(Box::pin(stream))),
            task: Mutex::new(None),
        }
    }

    /// A weak reference, for the owner to end the feed when it stops.
    pub(crate) fn weak(&self) -> Weak<FeedShared> {
        Arc::downgrade(&self.shared)
    }
}

#[pymethods]
impl EventFeed {
    /// Starts pumping; `callback` is scheduled on `loop` (with
    /// `call_soon_threadsafe`) whenever events arrive after a drain.
    fn start(&self, event_loop: &Bound<'_, PyAny>, callback: Py<PyAny>) -> PyResult<()> {
        let Some(mut stream) = self.source.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(()); // started already
        };
        *self.shared.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Waker {
            call_soon_threadsafe: event_loop.getattr("call_soon_threadsafe")?.unbind(),
            callback,
        }));
        let shared = self.shared.clone();
        let task = runtime::spawn(async move {
            loop {
                tokio::select! {
                    next = stream.next() => match next {
                        Some(event) => shared.accept(event),
                        None => break,
                    },
                    () = shared.finish.notified() => {
                        while let Some(Some(event)) = stream.next().now_or_never() {
                            shared.accept(event);
                        }
                        break;
                    }
                }
            }
            shared.end_and_wake();
        });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        Ok(())
    }

    /// Takes every queued event: a list (empty when nothing is queued yet), or
    /// `None` once the feed has ended and is empty.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let (events, ended) = {
            let mut st = self.shared.lock();
            let events = std::mem::take(&mut st.events);
            st.notified = false;
            st.dropping = false;
            (events, st.ended)
        };
        if events.is_empty() && ended {
            return Ok(None);
        }
        let list = PyList::empty(py);
        for e in &events {
            list.append(PyEvent::from_core(py, e)?)?;
        }
        Ok(Some(list))
    }

    /// Replaces the set of event kinds kept (a bit mask over `KINDS`).
    fn set_mask(&self, mask: u32) {
        self.shared.mask.store(mask & ALL_KINDS, Ordering::Relaxed);
    }

    /// Events dropped because the consumer fell `capacity` events behind.
    #[getter]
    fn missed(&self) -> u64 {
        self.shared.missed.load(Ordering::Relaxed)
    }

    /// Stops the pump and releases the loop and callback; `drain` then ends.
    fn close(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        self.source.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.shared.end();
        self.shared
            .waker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// The bit mask for a list of kinds (names the protocol does not define are
/// app types; an empty name is a `ValueError`).
#[pyfunction]
pub(crate) fn kinds_mask(kinds: Vec<String>) -> PyResult<u32> {
    let mut mask = 0;
    for k in &kinds {
        let bit = kind_bit(k);
        if k.is_empty() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown event type {k:?}; known: {}",
                KINDS.join(", ")
            )));
        }
        mask |= bit;
    }
    Ok(mask)
}

/// One event: `type` is the protocol's type string, `data` the message as a
/// dict (with its `type`), `room_id`/`user_id` shortcuts into it.
#[pyclass(frozen, name = "Event", module = "switchboard")]
#[derive(Debug)]
pub(crate) struct PyEvent {
    kind: String,
    data: Py<PyDict>,
}

impl PyEvent {
    pub(crate) fn from_core<'py>(py: Python<'py>, event: &Event) -> PyResult<Bound<'py, PyEvent>> {
        let data = match event.fields() {
            Some(fields) => {
                let d = PyDict::new(py);
                d.set_item("type", event.kind())?;
                for (k, v) in fields {
                    d.set_item(k, to_py(py, v)?)?;
                }
                d
            }
            None => match event.to_json() {
                serde_json::Value::Object(m) => object_to_py(py, &m)?,
                _ => PyDict::new(py),
            },
        };
        Bound::new(
            py,
            PyEvent {
                kind: event.kind().to_owned(),
                data: data.unbind(),
            },
        )
    }

    fn str_field(&self, py: Python<'_>, name: &str) -> Option<String> {
        self.data
            .bind(py)
            .get_item(name)
            .ok()
            .flatten()
            .and_then(|v| {
                v.cast::<PyString>()
                    .ok()
                    .and_then(|s| s.to_cow().ok().map(|c| c.into_owned()))
            })
    }
}

#[pymethods]
impl PyEvent {
    /// The protocol `type` string (`"user-joined"`, `"offer"`, …).
    #[getter(r#type)]
    fn kind(&self) -> &str {
        &self.kind
    }

    /// The message's fields as a dict, `type` included.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyDict> {
        self.data.clone_ref(py)
    }

    /// `roomId`, when the message has one.
    #[getter]
    fn room_id(&self, py: Python<'_>) -> Option<String> {
        self.str_field(py, "roomId")
    }

    /// `userId`, when the message has one.
    #[getter]
    fn user_id(&self, py: Python<'_>) -> Option<String> {
        self.str_field(py, "userId")
    }

    /// `from` (the sender of a relayed message), when present.
    #[getter]
    fn sender(&self, py: Python<'_>) -> Option<String> {
        self.str_field(py, "from")
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        self.data.bind(py).as_any().get_item(key)
    }

    fn __contains__(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        self.data.bind(py).contains(key)
    }

    /// `data.get(key, default)`.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.data.bind(py).get_item(key)? {
            Some(v) => v,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Event(type={:?}, data={})",
            self.kind,
            self.data.bind(py).repr()?
        ))
    }
}
