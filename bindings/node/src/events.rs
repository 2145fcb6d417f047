//! Pulling events into JS: one bounded broadcast receiver per source, drained in
//! batches serialized as one JSON array, with an optional filter by event name
//! so that events no JS listener wants never cross the boundary.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};

use futures_util::StreamExt;
use switchboard::{Event, EventStream};
use tokio::sync::{broadcast, watch};

/// Most events handed to JS in one batch (the rest wait for the next pull).
const MAX_BATCH: usize = 512;

/// Where the events come from.
pub(crate) enum Source {
    /// The hub's bounded broadcast channel (server side).
    Hub(broadcast::Receiver<Event>),
    /// The core client's event stream (ends after `closed`).
    Client(EventStream),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Hub(_) => "Source::Hub",
            Source::Client(_) => "Source::Client",
        })
    }
}

/// A pull-based event pump shared by the JS pump loop and the native object.
#[derive(Debug)]
pub(crate) struct Pump {
    /// Taken by the one pending `next()` (the JS loop pulls one batch at a time).
    source: tokio::sync::Mutex<Option<Source>>,
    /// Event names wanted by JS; `None` = all.
    filter: RwLock<Option<HashSet<String>>>,
    /// Events lost because JS fell more than the buffer behind (hub side).
    missed: Mutex<u64>,
}

impl Pump {
    pub(crate) fn new() -> Self {
        Pump {
            source: tokio::sync::Mutex::new(None),
            filter: RwLock::new(None),
            missed: Mutex::new(0),
        }
    }

    /// Installs the source once; later calls keep the first one.
    pub(crate) fn set_source(&self, make: impl FnOnce() -> Source) {
        if let Ok(mut s) = self.source.try_lock() {
            if s.is_none() {
                *s = Some(make());
            }
        }
    }

    pub(crate) fn set_filter(&self, kinds: Option<Vec<String>>) {
        *self.filter.write().unwrap_or_else(|p| p.into_inner()) =
            kinds.map(|k| k.into_iter().collect());
    }

    pub(crate) fn missed(&self) -> u64 {
        *self.missed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wanted(&self, e: &Event) -> bool {
        match &*self.filter.read().unwrap_or_else(|p| p.into_inner()) {
            None => true,
            Some(kinds) => kinds.contains(e.kind()),
        }
    }

    fn add_missed(&self, n: u64) {
        *self.missed.lock().unwrap_or_else(|p| p.into_inner()) += n;
        tracing::warn!(
            missed = n,
            "JS event listeners fell behind; the oldest events were dropped"
        );
    }

    /// The next batch as a JSON array, or `None` once the source ended or `stop`
    /// turned true (events already queued at that moment are still delivered).
    pub(crate) async fn next(&self, mut stop: watch::Receiver<bool>) -> Option<String> {
        let mut guard = self.source.lock().await;
        let source = guard.as_mut()?;
        let mut batch: Vec<Event> = Vec::new();
        // Wait for the first wanted event.
        loop {
            let stopping = *stop.borrow_and_update();
            let first = if stopping {
                match self.try_one(source) {
                    Ok(Some(e)) => Some(e),
                    Ok(None) => return None,
                    Err(()) => {
                        *guard = None;
                        return None;
                    }
                }
            } else {
                tokio::select! {
                    e = self.recv(source) => match e {
                        Some(e) => Some(e),
                        None => { *guard = None; return None; }
                    },
                    _ = stop.changed() => None,
                }
            };
            if let Some(e) = first {
                if self.wanted(&e) {
                    batch.push(e);
                    break;
                }
            }
        }
        // Then everything else already queued, up to the batch bound.
        while batch.len() < MAX_BATCH {
            match self.try_one(source) {
                Ok(Some(e)) => {
                    if self.wanted(&e) {
                        batch.push(e);
                    }
                }
                Ok(None) => break,
                Err(()) => {
                    // Ended: a finished stream must not be polled again.
                    *guard = None;
                    break;
                }
            }
        }
        Some(to_json_array(&batch))
    }

    async fn recv(&self, source: &mut Source) -> Option<Event> {
        match source {
            Source::Hub(rx) => loop {
                match rx.recv().await {
                    Ok(e) => return Some(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => self.add_missed(n),
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
            Source::Client(stream) => stream.next().await,
        }
    }

    /// One already queued event: `Ok(None)` when none is queued right now,
    /// `Err(())` when the source ended.
    fn try_one(&self, source: &mut Source) -> Result<Option<Event>, ()> {
        match source {
            Source::Hub(rx) => loop {
                match rx.try_recv() {
                    Ok(e) => return Ok(Some(e)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => self.add_missed(n),
                    Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                    Err(broadcast::error::TryRecvError::Closed) => return Err(()),
                }
            },
            Source::Client(stream) => match futures_util::FutureExt::now_or_never(stream.next()) {
                Some(Some(e)) => Ok(Some(e)),
                Some(None) => Err(()),
                None => Ok(None),
            },
        }
    }
}

fn to_json_array(events: &[Event]) -> String {
    let mut out = Vec::with_capacity(events.len() * 160 + 2);
    out.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serializing an `Event` (strings, numbers, JSON maps) can not fail;
        // an app type's event is named at run time, so it goes through `to_json`.
        let _ = match e {
            Event::App { .. } => serde_json::to_writer(&mut out, &e.to_json()),
            _ => serde_json::to_writer(&mut out, e),
        };
    }
    out.push(b']');
    String::from_utf8(out).unwrap_or_default()
}
