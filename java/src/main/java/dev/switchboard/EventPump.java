// EventPump.java: turns a handle's pull API (`*_next_event`) into Java
// listeners: one poller thread per handle feeds an executor. Pulling directly
// (nextEvent) and listeners are exclusive, as both would read the same queue.
package dev.switchboard;

import com.sun.jna.ptr.PointerByReference;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

final class EventPump {
    /** A native pull function bound to its handle. */
    interface Pull {
        int next(int timeoutMs, PointerByReference out);
    }

    private static final System.Logger LOG = System.getLogger("dev.switchboard");

    private final Pull pull;
    private final String name;
    private final Executor executor;
    /** The executor this pump made (shut down on close); null when the user gave one. */
    private final ExecutorService ownExecutor;
    private final Map<String, List<Consumer<SwitchboardEvent>>> listeners = new ConcurrentHashMap<>();
    private final List<Consumer<SwitchboardEvent>> anyListeners = new CopyOnWriteArrayList<>();
    private Thread poller;
    /** The thread of {@link #ownExecutor}, to notice a listener that closes its own handle. */
    private volatile Thread listenerThread;

    EventPump(Pull pull, String name, Executor executor) {
        this.pull = pull;
        this.name = name;
        if (executor == null) {
            // One thread: listeners run in event order.
            this.ownExecutor = Executors.newSingleThreadExecutor(r -> {
                Thread t = new Thread(r, name + "-listeners");
                t.setDaemon(true);
                listenerThread = t;
                return t;
            });
            this.executor = ownExecutor;
        } else {
            this.ownExecutor = null;
            this.executor = executor;
        }
    }

    synchronized void on(String type, Consumer<SwitchboardEvent> listener) {
        listeners.computeIfAbsent(type, t -> new CopyOnWriteArrayList<>()).add(listener);
        startPoller();
    }

    synchronized void onAny(Consumer<SwitchboardEvent> listener) {
        anyListeners.add(listener);
        startPoller();
    }

    private void startPoller() {
        if (poller == null) {
            poller = new Thread(this::poll, name + "-events");
            poller.setDaemon(true);
            poller.start();
        }
    }

    /** The pull API; refused once listeners own the events. */
    Optional<SwitchboardEvent> next(Duration timeout) {
        synchronized (this) {
            if (poller != null) {
                throw new IllegalStateException("events go to the registered listeners");
            }
        }
        PointerByReference out = new PointerByReference();
        int r = pull.next((int) Math.min(Integer.MAX_VALUE, Math.max(0, timeout.toMillis())), out);
        if (r == NativeLib.TIMEOUT) {
            return Optional.empty();
        }
        NativeLib.check(r);
        return Optional.of(SwitchboardEvent.take(out.getValue()));
    }

    private void poll() {
        PointerByReference out = new PointerByReference();
        while (true) {
            int r;
            try {
                r = pull.next(250, out);
            } catch (SwitchboardException e) {
                return; // freed: nothing more to read
            }
            if (r == NativeLib.TIMEOUT) {
                continue;
            }
            if (r != NativeLib.OK) {
                if (r != NativeLib.CLOSED) {
                    LOG.log(System.Logger.Level.WARNING, "event poller stopped: "
                            + SwitchboardException.fromLastError(r).getMessage());
                }
                return; // the stream ended: stop/close was called
            }
            SwitchboardEvent ev = SwitchboardEvent.take(out.getValue());
            List<Consumer<SwitchboardEvent>> typed = listeners.getOrDefault(ev.type(), List.of());
            if (typed.isEmpty() && anyListeners.isEmpty()) {
                continue;
            }
            executor.execute(() -> {
                for (Consumer<SwitchboardEvent> l : typed) {
                    deliver(l, ev);
                }
                for (Consumer<SwitchboardEvent> l : anyListeners) {
                    deliver(l, ev);
                }
            });
        }
    }

    private static void deliver(Consumer<SwitchboardEvent> listener, SwitchboardEvent ev) {
        try {
            listener.accept(ev);
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "a listener for " + ev.type() + " threw", e);
        }
    }

    /**
     * After the native stream ended (stop/close): waits for the poller, then for
     * the listeners already queued on the executor this pump owns.
     */
    void finish() {
        Thread p;
        synchronized (this) {
            p = poller;
        }
        if (p != null) {
            joinUninterruptibly(p);
        }
        if (ownExecutor != null) {
            ownExecutor.shutdown();
            if (Thread.currentThread() == listenerThread) {
                return; // a listener closing its own handle: its thread ends after it
            }
            boolean interrupted = false;
            while (true) {
                try {
                    if (ownExecutor.awaitTermination(1, TimeUnit.MINUTES)) {
                        break;
                    }
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private static void joinUninterruptibly(Thread t) {
        boolean interrupted = false;
        while (true) {
            try {
                t.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
