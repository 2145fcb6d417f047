// A typed EventEmitter whose dispatch never lets a listener's exception (or
// async rejection) escape, plus bounded async-iterator queues for `events()`.
import { EventEmitter } from 'node:events';

import { reportListenerError } from './errors';

type Listener<E> = (event: E) => unknown;

/** Most events one `events()` iterator buffers; past it the oldest are dropped. */
export const ITERATOR_BUFFER = 1024;

/** One `events()` iterator's queue. */
class EventQueue<E> implements AsyncIterableIterator<E> {
  private readonly items: E[] = [];
  private waiting: ((r: IteratorResult<E>) => void) | null = null;
  private ended = false;
  /** Events dropped because this reader fell more than `ITERATOR_BUFFER` behind. */
  missed = 0;

  constructor(private readonly onReturn: (q: EventQueue<E>) => void) {}

  push(e: E): void {
    if (this.ended) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: e, done: false });
      return;
    }
    if (this.items.length >= ITERATOR_BUFFER) {
      this.items.shift();
      this.missed += 1;
    }
    this.items.push(e);
  }

  end(): void {
    this.ended = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<E>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift() as E, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  return(): Promise<IteratorResult<E>> {
    this.items.length = 0;
    this.end();
    this.onReturn(this);
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<E> {
    return this;
  }
}

/**
 * An EventEmitter typed by an event map. Events are dispatched through
 * `dispatch()`, which calls every listener even if one throws, and reports
 * exceptions and rejected promises as process warnings instead of crashing.
 */
export class TypedEmitter<M extends { [K in keyof M]: { type: string } }> extends EventEmitter {
  private readonly queues = new Set<EventQueue<M[keyof M]>>();
  private iteratorsEnded = false;

  override on<K extends keyof M & string>(event: K, listener: Listener<M[K]>): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  override once<K extends keyof M & string>(event: K, listener: Listener<M[K]>): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.once(event, listener);
  }

  override off<K extends keyof M & string>(event: K, listener: Listener<M[K]>): this;
  override off(event: string | symbol, listener: (...args: any[]) => void): this;
  override off(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.off(event, listener);
  }

  override addListener<K extends keyof M & string>(event: K, listener: Listener<M[K]>): this;
  override addListener(event: string | symbol, listener: (...args: any[]) => void): this;
  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.addListener(event, listener);
  }

  /** Resolves with the next event of this name (rejects if the source ends first). */
  next<K extends keyof M & string>(event: K, options?: { timeoutMs?: number }): Promise<M[K]> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        this.off(event, onEvent);
        this.off('__end' as string, onEnd);
        if (timer) clearTimeout(timer);
      };
      const onEvent = (e: M[K]) => {
        done();
        resolve(e);
      };
      const onEnd = () => {
        done();
        reject(Object.assign(new Error(`ended before a '${event}' event`), { code: 'closed' }));
      };
      this.on(event, onEvent);
      super.on('__end', onEnd);
      if (options?.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done();
          reject(Object.assign(new Error(`no '${event}' event within ${options.timeoutMs} ms`), { code: 'timeout' }));
        }, options.timeoutMs);
      }
    });
  }

  /** Every event from now on, as an async iterator (bounded; ends with the source). */
  protected iterate(onOpen: () => void): AsyncIterableIterator<M[keyof M]> {
    const q = new EventQueue<M[keyof M]>((q) => {
      this.queues.delete(q);
      this.iteratorsChanged();
    });
    if (this.iteratorsEnded) {
      q.end();
      return q;
    }
    this.queues.add(q);
    onOpen();
    return q;
  }

  protected get iteratorCount(): number {
    return this.queues.size;
  }

  /** Called when an iterator was closed by its reader. */
  protected iteratorsChanged(): void {}

  /** Delivers one event to its listeners and to every iterator. */
  protected dispatch(event: M[keyof M]): void {
    for (const q of this.queues) q.push(event);
    const name = event.type;
    if (this.listenerCount(name) === 0) return;
    for (const listener of this.rawListeners(name) as Listener<M[keyof M]>[]) {
      try {
        const r = listener.call(this, event);
        if (r && typeof (r as Promise<unknown>).then === 'function') {
          (r as Promise<unknown>).then(undefined, (err) => reportListenerError(`a '${name}' listener`, err));
        }
      } catch (err) {
        reportListenerError(`a '${name}' listener`, err);
      }
    }
  }

  /**
   * Pulls batches (JSON arrays) from `next` and dispatches them until it
   * yields null (the source ended); then iterators end and `finish` runs.
   */
  protected async pump(what: string, next: () => Promise<string | null | undefined>, finish?: () => void): Promise<void> {
    try {
      for (;;) {
        const batch = await next();
        if (batch === null || batch === undefined) break;
        for (const e of JSON.parse(batch) as M[keyof M][]) this.dispatch(e);
      }
    } catch (err) {
      reportListenerError(`the ${what} event pump`, err);
    } finally {
      finish?.();
      this.endEvents();
    }
  }

  /** The event source ended: iterators finish, `next()` waiters reject. */
  protected endEvents(): void {
    this.iteratorsEnded = true;
    for (const q of this.queues) q.end();
    this.queues.clear();
    super.emit('__end');
  }
}
