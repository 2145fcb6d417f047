//! Events for C: the `switchboard_event` handle and its accessors, the bounded
//! per-reader queues that one pump task per server/client fills (the pull queue
//! behind `*_next_event` and one queue per push callback), and the dispatcher
//! thread that runs a push callback.

use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use sb::Event;

use crate::guard::{self, c_string, FfiResult, UserData};
use crate::switchboard_result;

/// One event: its type (the protocol's `type` string: `"user-joined"`,
/// `"offer"`, ..., or a client connection state such as `"reconnecting"`), the
/// whole event as a JSON object, and the fields C code routes on. Immutable, so
/// any thread may read it.
#[derive(Debug)]
pub struct switchboard_event {
    data: Arc<EventData>,
}

#[derive(Debug)]
pub(crate) struct EventData {
    kind: CString,
    json: CString,
    room_id: Option<CString>,
    user_id: Option<CString>,
    from: Option<CString>,
}

impl EventData {
    pub(crate) fn new(event: &Event) -> EventData {
        EventData {
            kind: c_string(event.kind()).unwrap_or_default(),
            // serde_json escapes control characters: the text has no raw NUL.
            json: c_string(&event.to_json().to_string()).unwrap_or_default(),
            room_id: event.room_id().and_then(c_string),
            user_id: event.user_id().and_then(c_string),
            from: event.from().and_then(c_string),
        }
    }
}

/// A push callback: `userdata` as registered, and an event that is valid only
/// until the callback returns (`switchboard_event_clone` keeps it longer).
pub type switchboard_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const switchboard_event)>;

/// The function of a [`switchboard_event_callback`] (spelled out there too:
/// cbindgen does not resolve aliases inside `Option`).
pub(crate) type EventCallbackFn =
    unsafe extern "C" fn(userdata: *mut c_void, event: *const switchboard_event);

fn field(
    ev: *const switchboard_event,
    pick: impl Fn(&EventData) -> Option<&CString>,
) -> *const c_char {
    guard::read(ev, "event", std::ptr::null(), |ev| {
        guard::c_ptr(pick(&ev.data))
    })
}

/// The event's type: the protocol `type` string (`"user-joined"`, `"offer"`,
/// ...) or a client state (`"connecting"`, `"open"`, `"reconnecting"`,
/// `"rejoined"`, `"reconnect-failed"`, `"closed"`); on a server also
/// `"connected"`/`"disconnected"` of a connection. Owned by `ev`; NULL if `ev`
/// is NULL.
///
/// # Safety
/// `ev` is NULL or a live event.
#[no_mangle]
pub unsafe extern "C" fn switchboard_event_type(ev: *const switchboard_event) -> *const c_char {
    field(ev, |d| Some(&d.kind))
}

/// The whole event as one JSON object with its `type` and the protocol
/// message's fields (`{"type":"offer","from":"alice","sdp":...}`). Owned by `ev`;
/// NULL if `ev` is NULL.
///
/// # Safety
/// `ev` is NULL or a live event.
#[no_mangle]
pub unsafe extern "C" fn switchboard_event_json(ev: *const switchboard_event) -> *const c_char {
    field(ev, |d| Some(&d.json))
}

/// The event's `roomId`, or NULL when it has none. Owned by `ev`.
///
/// # Safety
/// `ev` is NULL or a live event.
#[no_mangle]
pub unsafe extern "C" fn switchboard_event_room_id(ev: *const switchboard_event) -> *const c_char {
    field(ev, |d| d.room_id.as_ref())
}

/// The event's `userId`, or NULL when it has none. Owned by `ev`.
///
/// # Safety
/// `ev` is NULL or a live event.
#[no_mangle]
pub unsafe extern "C" fn switchboard_event_user_id(ev: *const switchboard_event) -> *const c_char {
    field(ev, |d| d.user_id.as_ref())
}

/// The event's `from` (the sender of a relayed `offer`/`answer`/`candidate`/
/// `message`/`chat`), or NULL when it has none. Owned by `ev`.
///
/// # Safety
/// `ev` is NULL or a live event.
#[no_mangle]
pub unsafe extern "C" fn switchboard_event_from(ev: *const switchboard_event) -> *const c_char {
    field(ev, |d| d.from.as_ref())
}

/// A copy of an event that the caller owns (free it with
/// `switchboard_event_free`), e.g. to keep an event past its callback. Cheap:
/// the data is shared. NULL if `ev` is NULL.
///
/// # Safety
/// `ev` is NULL or a live event.
#[no_mangle]
pub unsafe extern "C" fn switchboard_event_clone(
    ev: *const switchboard_event,
) -> *mut switchboard_event {
    guard::guard_or(std::ptr::null_mut(), || {
        // SAFETY: the caller passes NULL or a live event.
        let ev = unsafe { guard::handle(ev, "event") }?;
        Ok(Box::into_raw(Box::new(switchboard_event {
            data: ev.data.clone(),
        })))
    })
}

/// Frees an event from `*_next_event` or `switchboard_event_clone`. NULL is
/// allowed. Never free the event a callback receives.
///
/// # Safety
/// `ev` is NULL or an event the caller owns, not freed before.
#[no_mangle]
pub unsafe extern "C" fn switchboard_event_free(ev: *mut switchboard_event) {
    guard::guard_void(|| {
        if !ev.is_null() {
            // SAFETY: made by `Box::into_raw` in this module, owned by the caller.
            drop(unsafe { Box::from_raw(ev) });
        }
    });
}

/// Hands a pulled event to C (`*_next_event`).
pub(crate) fn into_raw(data: Arc<EventData>) -> *mut switchboard_event {
    Box::into_raw(Box::new(switchboard_event { data }))
}

/// What a reader gets from its queue.
pub(crate) enum Pop {
    Event(Arc<EventData>),
    Timeout,
    Closed,
}

/// A bounded queue of events for one reader. At the bound the oldest event is
/// dropped and counted (`missed`): the pump never waits for a slow reader,
/// which would stall everyone else's events.
#[derive(Debug)]
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Arc<EventData>>,
    /// No more events will come; readers get what is left, then `Closed`.
    finished: bool,
    /// The reader is gone: drop everything, readers get `Closed` at once.
    cancelled: bool,
    missed: u64,
}

impl EventQueue {
    fn new(capacity: usize) -> EventQueue {
        EventQueue {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Never held across user code: a poisoned lock still guards valid data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, event: Arc<EventData>) {
        let mut st = self.lock();
        if st.finished || st.cancelled {
            return;
        }
        if st.items.len() >= self.capacity {
            st.items.pop_front();
            st.missed += 1;
            if st.missed.is_power_of_two() {
                tracing::warn!(
                    missed = st.missed,
                    "a C event reader fell behind; its oldest events were dropped"
                );
            }
        }
        st.items.push_back(event);
        drop(st);
        self.ready.notify_all();
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.ready.notify_all();
    }

    fn cancel(&self) {
        let mut st = self.lock();
        st.cancelled = true;
        st.items.clear();
        drop(st);
        self.ready.notify_all();
    }

    /// The next event, waiting up to `timeout` (`None`: until one comes or the
    /// queue ends).
    pub(crate) fn pop(&self, timeout: Option<Duration>) -> Pop {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if st.cancelled {
                return Pop::Closed;
            }
            if let Some(e) = st.items.pop_front() {
                return Pop::Event(e);
            }
            if st.finished {
                return Pop::Closed;
            }
            st = match deadline {
                None => self.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Pop::Timeout;
                    }
                    self.ready
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    pub(crate) fn missed(&self) -> u64 {
        self.lock().missed
    }
}

/// Fans one source's events out to the pull queue and each callback's queue.
#[derive(Debug)]
pub(crate) struct Fanout {
    pull: EventQueue,
    callbacks: Mutex<Vec<Arc<EventQueue>>>,
    capacity: usize,
}

impl Fanout {
    pub(crate) fn new(capacity: usize) -> Fanout {
        Fanout {
            pull: EventQueue::new(capacity),
            callbacks: Mutex::new(Vec::new()),
            capacity,
        }
    }

    fn callbacks(&self) -> MutexGuard<'_, Vec<Arc<EventQueue>>> {
        self.callbacks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers one event to every reader (called by the pump task only).
    pub(crate) fn publish(&self, event: &Event) {
        let data = Arc::new(EventData::new(event));
        for q in self.callbacks().iter() {
            q.push(data.clone());
        }
        self.pull.push(data);
    }

    /// `n` events were lost before reaching the fan-out (the source's own
    /// bounded channel overflowed): every reader counts them as missed.
    pub(crate) fn lost(&self, n: u64) {
        for q in self
            .callbacks()
            .iter()
            .map(AsRef::as_ref)
            .chain([&self.pull])
        {
            q.lock().missed += n;
        }
    }

    /// The source ended: readers get what is queued, then `Closed`.
    pub(crate) fn finish(&self) {
        self.pull.finish();
        for q in self.callbacks().iter() {
            q.finish();
        }
    }

    /// The pull API: the next event or a timeout/closed code.
    pub(crate) fn next_event(
        &self,
        timeout_ms: u32,
        out: *mut *mut switchboard_event,
    ) -> FfiResult<()> {
        let out = guard::out_arg(out, "event_out")?;
        match self
            .pull
            .pop(Some(Duration::from_millis(timeout_ms.into())))
        {
            Pop::Event(e) => {
                // SAFETY: `out` was checked by `out_arg`; the caller gave writable memory.
                unsafe { guard::write_out(out, into_raw(e)) };
                Ok(())
            }
            Pop::Timeout => Err(guard::FfiError::new(
                switchboard_result::Timeout,
                format!("no event within {timeout_ms} ms"),
            )),
            Pop::Closed => Err(guard::FfiError::closed(
                "the event stream has ended (stopped or closed)",
            )),
        }
    }
}

/// The events of one server or client: the fan-out its pump fills, and its
/// push-callback slot.
#[derive(Debug)]
pub(crate) struct EventHub {
    fanout: Arc<Fanout>,
    callbacks: Mutex<CallbackSlot>,
}

impl EventHub {
    /// Readers get `capacity` events each; `callback`, registered before the
    /// source starts, sees every event from the first.
    pub(crate) fn new(
        capacity: usize,
        callback: Option<(EventCallbackFn, UserData)>,
    ) -> FfiResult<EventHub> {
        let hub = EventHub {
            fanout: Arc::new(Fanout::new(capacity)),
            callbacks: Mutex::new(CallbackSlot::default()),
        };
        if let Some((cb, userdata)) = callback {
            hub.set_callback(Some(cb), userdata.0)?;
        }
        Ok(hub)
    }

    /// What the pump publishes into.
    pub(crate) fn fanout(&self) -> Arc<Fanout> {
        self.fanout.clone()
    }

    pub(crate) fn set_callback(
        &self,
        callback: switchboard_event_callback,
        userdata: *mut c_void,
    ) -> FfiResult<()> {
        self.slot().set(&self.fanout, callback, userdata)
    }

    pub(crate) fn next_event(
        &self,
        timeout_ms: u32,
        out: *mut *mut switchboard_event,
    ) -> FfiResult<()> {
        self.fanout.next_event(timeout_ms, out)
    }

    pub(crate) fn missed(&self) -> u64 {
        self.fanout.pull.missed()
    }

    /// After the source finished: waits for the callback threads (see
    /// [`CallbackThreads::join`]); the slot's lock is released first, as a
    /// running callback may be waiting for it.
    pub(crate) fn join_callbacks(&self) {
        let threads = self.slot().take_threads();
        threads.join();
    }

    /// The source never started (connect failed): end the streams, join.
    pub(crate) fn abandon(&self) {
        self.fanout.finish();
        self.join_callbacks();
    }

    fn slot(&self) -> MutexGuard<'_, CallbackSlot> {
        self.callbacks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running push callback: its queue and its thread.
#[derive(Debug)]
struct Dispatcher {
    queue: Arc<EventQueue>,
    thread: JoinHandle<()>,
}

/// The push-callback slot of a server or client: at most one callback at a
/// time, plus replaced dispatchers whose threads are joined later (a callback
/// may replace itself, and a thread can not join itself).
#[derive(Debug, Default)]
pub(crate) struct CallbackSlot {
    current: Option<Dispatcher>,
    retired: Vec<JoinHandle<()>>,
}

impl CallbackSlot {
    /// Replaces the callback (`None` removes it). The old one gets no event after
    /// this returns, except the one it may be running now; its thread is joined
    /// by `join_all` (at stop/close and free).
    pub(crate) fn set(
        &mut self,
        fanout: &Fanout,
        callback: switchboard_event_callback,
        userdata: *mut c_void,
    ) -> FfiResult<()> {
        if let Some(old) = self.current.take() {
            fanout.callbacks().retain(|q| !Arc::ptr_eq(q, &old.queue));
            old.queue.cancel();
            self.retire(old.thread);
        }
        let Some(callback) = callback else {
            return Ok(());
        };
        let queue = Arc::new(EventQueue::new(fanout.capacity));
        {
            let mut callbacks = fanout.callbacks();
            // A source that already ended gives the new reader nothing but the end.
            if fanout.pull.lock().finished {
                queue.finish();
            }
            callbacks.push(queue.clone());
        }
        let userdata = UserData(userdata);
        let reader = queue.clone();
        let thread = std::thread::Builder::new()
            .name("switchboard-events".to_owned())
            .spawn(move || dispatch(&reader, callback, userdata))
            .map_err(|e| {
                fanout.callbacks().retain(|q| !Arc::ptr_eq(q, &queue));
                guard::FfiError::new(
                    switchboard_result::Io,
                    format!("cannot start the callback thread: {e}"),
                )
            })?;
        self.current = Some(Dispatcher { queue, thread });
        Ok(())
    }

    /// Keeps a replaced dispatcher's thread to join later, never here: the old
    /// callback may be running right now (even be the caller), and waiting for it
    /// while the caller holds the handle could deadlock. Threads that already
    /// ended are reaped, so the list stays as short as the callbacks still running.
    fn retire(&mut self, thread: JoinHandle<()>) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(JoinHandle::is_finished);
        for t in done {
            let _ = t.join();
        }
        self.retired = running;
        self.retired.push(thread);
    }

    /// Takes every callback thread out of the slot, to be joined by
    /// [`CallbackThreads::join`] once the caller no longer holds the slot's lock
    /// (a running callback may be waiting for that lock).
    pub(crate) fn take_threads(&mut self) -> CallbackThreads {
        CallbackThreads {
            current: self.current.take(),
            retired: std::mem::take(&mut self.retired),
        }
    }
}

/// Callback threads on their way out; see [`CallbackSlot::take_threads`].
#[derive(Debug)]
pub(crate) struct CallbackThreads {
    current: Option<Dispatcher>,
    retired: Vec<JoinHandle<()>>,
}

impl CallbackThreads {
    /// Waits for each thread; after the source finished, each one first delivers
    /// what is queued. Called from a callback thread (a callback that stops or
    /// frees its own handle), that thread's remaining events are dropped instead,
    /// and it ends by itself once the callback returns.
    pub(crate) fn join(self) {
        let me: ThreadId = std::thread::current().id();
        let threads = self
            .current
            .map(|d| {
                if d.thread.thread().id() == me {
                    d.queue.cancel();
                }
                d.thread
            })
            .into_iter()
            .chain(self.retired);
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

fn dispatch(queue: &EventQueue, callback: EventCallbackFn, userdata: UserData) {
    while let Pop::Event(data) = queue.pop(None) {
        let event = switchboard_event { data };
        // SAFETY: the callback and userdata were registered together by the C
        // side, which promises the callback may run on this thread; the event
        // lives until the call returns, as documented.
        unsafe { callback(userdata.0, &event) };
    }
}
