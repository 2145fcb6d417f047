// NativeHandle.java: a native server/client pointer that Java code can never
// use after it was freed: calls share a read lock, free takes the write lock,
// and a call after free throws CLOSED instead of touching freed memory.
package dev.switchboard;

import com.sun.jna.Pointer;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.ToIntFunction;

final class NativeHandle {
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private final String what;
    private Pointer pointer;

    NativeHandle(Pointer pointer, String what) {
        this.pointer = pointer;
        this.what = what;
    }

    /** Runs a native call that returns a result code, and throws on failure. */
    void call(ToIntFunction<Pointer> f) {
        NativeLib.check(apply(f::applyAsInt));
    }

    /** Runs a native call on the live pointer. */
    <T> T apply(Function<Pointer, T> f) {
        lock.readLock().lock();
        try {
            if (pointer == null) {
                throw new SwitchboardException(SwitchboardException.CLOSED, "closed", "the " + what + " is closed");
            }
            return f.apply(pointer);
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Frees once, after every running call returned. */
    void free(Consumer<Pointer> free) {
        lock.writeLock().lock();
        try {
            if (pointer != null) {
                free.accept(pointer);
                pointer = null;
            }
        } finally {
            lock.writeLock().unlock();
        }
    }
}
