/**
 * A full garbage collection, where the runtime lets a program ask for one: Node and Deno through
 * V8's --expose-gc (set at run time; `gc` then comes from a fresh context), Bun through Bun.gc.
 * For loops that make buffers outside V8's heap (zlib's output): V8 collects those only once
 * some 64 MiB of them have piled up, which showed as peak RSS (docs/object-storage.md).
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

let collect: (() => void) | null | undefined;

export function collectGarbage(): void {
  if (collect === undefined) {
    const bun = (globalThis as { Bun?: { gc(full: boolean): void } }).Bun;
    try {
      if (bun) collect = () => bun.gc(true);
      else {
        v8.setFlagsFromString('--expose-gc');
        collect = vm.runInNewContext('gc') as () => void;
      }
    } catch {
      collect = null;
    }
  }
  collect?.();
}
