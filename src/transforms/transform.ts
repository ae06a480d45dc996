/**
 * A transform: one layer a backup file may be wrapped in (gzip, age, …), knowing its suffix, how
 * to pack and unpack itself as a stream, and how to tell its own output from its first bytes.
 * index.ts lists them in the order they are applied; nothing outside this folder names one.
 */
import type { Recipient } from '../age/index.ts';
import type { Chunks } from '../storage/store.ts';

export type { Chunks } from '../storage/store.ts';

/** Keys for the age layer: who to encrypt to, and what to decrypt with. */
export interface KeyOptions {
  /**
   * Encrypt to these age recipients (`age1…`). Required when the destination ends in `.age`;
   * refused for any other file destination (its name would lie about what it holds).
   */
  recipients?: string[];
  /** Decrypt with these: the text of age identity files, or `AGE-SECRET-KEY-1…` keys. */
  identities?: string[];
}

/**
 * Packs a whole file ahead of the job's end, on another thread (the encrypting thread): started
 * once the copy is made, while the main thread checks it; its output is used only if the check
 * passes.
 */
export interface FilePacker {
  start(src: string, out: string): Promise<void>;
  /** Waits for the output; `between` runs while waiting (a Ctrl-C is seen there). Returns its bytes. */
  finish(between?: () => Promise<void>): Promise<number>;
  stop(): Promise<void>;
}

export interface Transform {
  /** What messages call it ('gzip', 'age'). */
  readonly name: string;
  /** The suffix of a file it packed last: '.gz', '.age'. */
  readonly suffix: string;
  /** What it does to the bytes: results say `compressed` / `encrypted`, progress names the phase. */
  readonly does: 'compress' | 'encrypt';
  /** True when `head` (a file's first bytes: 4 KiB, or all of a shorter file) starts like its output. */
  detect(head: Uint8Array): boolean;
  /** Throws E_CORRUPT when `head` is not its output but a damaged one (said so, not "not an SQLite database"). */
  refuseDamaged?(head: Uint8Array, shown: string): void;
  /** Its output for `input`. */
  pack(input: Chunks, recipients: Recipient[]): Chunks;
  /** What `input` (its output) was packed from; a damaged input is E_CORRUPT, a wrong key E_KEY. */
  unpack(input: Chunks, keys: KeyOptions, shown: string): Chunks;
  /**
   * What the first bytes of its output (`packed`: ~100 KiB, or all of a shorter file) unpack
   * to: at least `want` bytes, or all there are. Reads nothing else (listings read no whole file).
   */
  peek(packed: Uint8Array, keys: KeyOptions, shown: string, want: number): Promise<Uint8Array>;
  /**
   * The first plain bytes of the file `file` it is the outer layer of, read from the file (sync),
   * so that the layers beneath can be found. Absent: what it holds is the database itself.
   */
  innerHead?(file: string, keys: KeyOptions): Uint8Array;
  /** A packer of whole files on another thread, when this transform is the only layer (age: the encrypting thread). */
  packerAhead?(recipients: Recipient[]): Promise<FilePacker | null>;
}
