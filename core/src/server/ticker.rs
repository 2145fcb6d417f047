//! One timer for every connection of a server, and their census: a
//! connection's task registers its waker here for its next deadline (a ping,
//! the silence limit, a stuck write, the close grace) instead of holding a
//! `tokio::time::Sleep` of its own (112 bytes per connection, for a timer that
//! fires a few times a minute), and counts itself alive here, so that a drain
//! that ran out of time can cut the rest without a `JoinSet` entry (64 bytes)
//! per connection.

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Deadlines, in ticks of [`RESOLUTION_MS`] since the ticker started (rounded
/// up: a deadline never fires early), and the wakers waiting for each.
///
/// Bounded by the connections: a task registers once per deadline it sets
/// (a few per heartbeat interval), and a registration leaves the wheel when
/// its deadline comes, at most one heartbeat timeout after it was made; a
/// connection that ended meanwhile is woken for nothing, once.
/// How late a deadline may fire. Liveness deadlines are seconds apart; in
/// coarse ticks, connections share entries of the wheel (10 000 connections
/// pinging every 25 s: ~4 per tick) instead of each holding an entry and a
/// `Vec` of its own.
const RESOLUTION_MS: u64 = 10;

#[derive(Debug)]
pub(crate) struct Ticker {
    base: Instant,
    /// Every deadline up to this one has come.
    passed: AtomicU64,
    wheel: Mutex<BTreeMap<u64, Vec<Waker>>>,
    /// A deadline earlier than the ticker's next one, or the stop.
    earlier: Notify,
    stopped: AtomicBool,
    /// Tasks alive (each holds a [`Census`]), and their last one ending.
    alive: AtomicUsize,
    none_alive: Notify,
    /// Set by [`Ticker::cut`]: every task ends at its next poll.
    cut: AtomicBool,
}

/// A task's place in the census: counted from [`Ticker::census`] until dropped.
#[derive(Debug)]
pub(crate) struct Census(Arc<Ticker>);

impl std::ops::Deref for Census {
    type Target = Ticker;

    fn deref(&self) -> &Ticker {
        &self.0
    }
}

/// Watches for a cut on behalf of a task that has no deadline of its own on
/// the ticker (a socket before its connection opens: the request phase, a
/// TLS handshake, a refusal): it stays registered with the ticker, so a cut
/// wakes it. One registration per [`CUT_WATCH`], not one per poll.
#[derive(Debug)]
pub(crate) struct CutWatch {
    census: Census,
    registered: Option<u64>,
}

/// How long a watch's registration lasts before it is renewed. A cut wakes
/// every registration at once, so this bounds only how often a long request
/// phase (an admin event stream) is woken for nothing.
const CUT_WATCH: Duration = Duration::from_secs(5);

impl CutWatch {
    pub(crate) fn new(census: Census) -> CutWatch {
        CutWatch {
            census,
            registered: None,
        }
    }

    /// Whether the task must end now; if not, it will be woken when it must.
    pub(crate) fn is_cut(&mut self, cx: &Context<'_>) -> bool {
        if self.census.is_cut() {
            return true;
        }
        if self.registered.is_none_or(|r| self.census.has_passed(r)) {
            let renew = self.census.deadline(Instant::now() + CUT_WATCH);
            self.census.wake_at(renew, cx.waker());
            self.registered = Some(renew);
        }
        false
    }

    /// The task's place in the census, for the connection it became.
    pub(crate) fn into_census(self) -> Census {
        self.census
    }
}

/// Runs `task` until it ends, or until the server cuts (`None`).
pub(crate) async fn until_cut<F: Future>(task: F, census: Census) -> Option<F::Output> {
    let mut watch = CutWatch::new(census);
    let mut task = std::pin::pin!(task);
    poll_fn(|cx| {
        if watch.is_cut(cx) {
            return Poll::Ready(None);
        }
        task.as_mut().poll(cx).map(Some)
    })
    .await
}

impl Drop for Census {
    fn drop(&mut self) {
        if self.0.alive.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_alive.notify_waiters();
        }
    }
}

impl Ticker {
    /// A ticker driven by a task on the current runtime, until [`Ticker::stop`].
    pub(crate) fn start() -> Arc<Ticker> {
        let ticker = Arc::new(Ticker {
            base: Instant::now(),
            passed: AtomicU64::new(0),
            wheel: Mutex::new(BTreeMap::new()),
            earlier: Notify::new(),
            stopped: AtomicBool::new(false),
            alive: AtomicUsize::new(0),
            none_alive: Notify::new(),
            cut: AtomicBool::new(false),
        });
        tokio::spawn(run(ticker.clone()));
        ticker
    }

    /// The deadline `at` as this ticker counts it.
    pub(crate) fn deadline(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base);
        let tick = since
            .as_nanos()
            .div_ceil(u128::from(RESOLUTION_MS) * 1_000_000);
        u64::try_from(tick).unwrap_or(u64::MAX)
    }

    /// Whether `deadline` has come. An atomic load: no clock is read.
    pub(crate) fn has_passed(&self, deadline: u64) -> bool {
        self.passed.load(Ordering::Acquire) >= deadline
    }

    /// Wakes `waker` once `deadline` has come (or at once after a cut).
    pub(crate) fn wake_at(&self, deadline: u64, waker: &Waker) {
        let mut wheel = self.lock();
        // Under the wheel's lock, as `cut_all` sets it: a registration is
        // either in the wheel it empties or sees the cut.
        if self.is_cut() {
            return waker.wake_by_ref();
        }
        let next = wheel.keys().next().copied();
        wheel.entry(deadline).or_default().push(waker.clone());
        drop(wheel);
        if next.is_none_or(|next| deadline < next) {
            self.earlier.notify_one();
        }
    }

    /// Counts a task alive until the returned guard is dropped.
    pub(crate) fn census(self: &Arc<Self>) -> Census {
        self.alive.fetch_add(1, Ordering::AcqRel);
        Census(self.clone())
    }

    /// Whether the tasks must end now (see [`Ticker::cut_all`]).
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Ends every task: they are woken, see [`Ticker::is_cut`] and end (their
    /// sockets dropped, their sessions away). Returns once none is alive.
    pub(crate) async fn cut_all(&self) {
        let wheel = {
            let mut wheel = self.lock();
            self.cut.store(true, Ordering::Release);
            std::mem::take(&mut *wheel)
        };
        wheel.into_values().flatten().for_each(Waker::wake);
        loop {
            let none_alive = self.none_alive.notified();
            tokio::pin!(none_alive);
            none_alive.as_mut().enable();
            if self.alive.load(Ordering::Acquire) == 0 {
                return;
            }
            none_alive.await;
        }
    }

    /// Ends the ticker's task (the server stopped; its connections are gone).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.earlier.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Vec<Waker>>> {
        self.wheel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes everyone whose deadline has come.
    fn fire(&self) {
        let now = self.base.elapsed().as_millis() as u64 / RESOLUTION_MS;
        self.passed.fetch_max(now, Ordering::AcqRel);
        let mut wheel = self.lock();
        let later = wheel.split_off(&(now + 1));
        let due = std::mem::replace(&mut *wheel, later);
        drop(wheel);
        due.into_values().flatten().for_each(Waker::wake);
    }
}

async fn run(ticker: Arc<Ticker>) {
    loop {
        let earlier = ticker.earlier.notified();
        tokio::pin!(earlier);
        // Listening before the wheel is read: a deadline added after the
        // read is not missed.
        earlier.as_mut().enable();
        if ticker.stopped.load(Ordering::Acquire) {
            return;
        }
        let next = ticker.lock().keys().next().copied();
        match next {
            Some(next) => {
                let at = ticker.base + Duration::from_millis(next.saturating_mul(RESOLUTION_MS));
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = &mut earlier => {}
                }
            }
            None => earlier.await,
        }
        ticker.fire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    /// Waits for `deadline` the way a connection task does.
    async fn until(ticker: &Ticker, deadline: u64) {
        let mut armed = false;
        poll_fn(|cx| {
            if ticker.has_passed(deadline) {
                return Poll::Ready(());
            }
            if !armed {
                ticker.wake_at(deadline, cx.waker());
                armed = true;
            }
            Poll::Pending
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_come_in_order_never_early_and_the_wheel_empties() {
        let ticker = Ticker::start();
        let t0 = Instant::now();
        let late = ticker.deadline(t0 + Duration::from_secs(30));
        let soon = ticker.deadline(t0 + Duration::from_millis(1500));
        let (a, b) = (ticker.clone(), ticker.clone());
        let late_task = tokio::spawn(async move { until(&a, late).await });
        // Registered after the later one: the ticker must wake earlier for it.
        tokio::task::yield_now().await;
        until(&b, soon).await;
        assert!(Instant::now() >= t0 + Duration::from_millis(1500));
        assert!(!ticker.has_passed(late));
        late_task.await.unwrap();
        assert!(Instant::now() >= t0 + Duration::from_secs(30));
        assert!(ticker.lock().is_empty(), "fired deadlines leave the wheel");
        ticker.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_wakes_every_waiting_task_and_returns_once_none_is_alive() {
        let ticker = Ticker::start();
        let far = ticker.deadline(Instant::now() + Duration::from_secs(3600));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let census = ticker.census();
                tokio::spawn(async move {
                    let mut armed = false;
                    poll_fn(|cx| {
                        if census.is_cut() {
                            return Poll::Ready(());
                        }
                        if !std::mem::replace(&mut armed, true) {
                            census.wake_at(far, cx.waker());
                        }
                        Poll::Pending
                    })
                    .await;
                })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(ticker.alive.load(Ordering::Relaxed), 3);
        let t0 = Instant::now();
        ticker.cut_all().await;
        assert_eq!(ticker.alive.load(Ordering::Relaxed), 0);
        assert!(
            Instant::now() < t0 + Duration::from_secs(1),
            "not at the deadline"
        );
        for t in tasks {
            t.await.unwrap();
        }
        ticker.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_registers_once_per_renewal_however_often_its_task_is_polled() {
        let ticker = Ticker::start();
        let registered = |t: &Ticker| t.lock().values().map(Vec::len).sum::<usize>();
        let mut watch = CutWatch::new(ticker.census());
        let cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            assert!(!watch.is_cut(&cx));
        }
        assert_eq!(registered(&ticker), 1);
        // The registration came and went: the next poll renews it, once.
        tokio::time::sleep(CUT_WATCH + Duration::from_millis(50)).await;
        assert_eq!(registered(&ticker), 0);
        for _ in 0..100 {
            assert!(!watch.is_cut(&cx));
        }
        assert_eq!(registered(&ticker), 1);
        let cutting = tokio::spawn({
            let ticker = ticker.clone();
            async move { ticker.cut_all().await }
        });
        tokio::task::yield_now().await;
        assert!(watch.is_cut(&cx));
        assert!(!cutting.is_finished(), "the watch's task is still alive");
        drop(watch);
        cutting.await.unwrap();
        ticker.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_passed_wakes_at_once() {
        let ticker = Ticker::start();
        tokio::time::sleep(Duration::from_millis(20)).await;
        until(&ticker, ticker.deadline(Instant::now())).await;
        until(&ticker, 1).await;
        ticker.stop();
    }
}
