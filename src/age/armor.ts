/**
 * The age format's ASCII armor (age -a): PEM-style base64 of the binary file in 64 columns,
 * between a BEGIN and an END line. Recognising it, and decoding it as a stream or a prefix.
 */
import * as fs from 'node:fs';
import { BlufioError } from '../errors.ts';

export const ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----';
const ARMOR_END = '-----END AGE ENCRYPTED FILE-----';

/** True when the first bytes of a file are those of an armored age file. */
export const isArmored = (b: Uint8Array) => Buffer.from(b.subarray(0, 200)).toString('latin1').trimStart().startsWith(ARMOR_BEGIN);

/** Decodes as much of an armored file's beginning as `text` holds (whole lines only). */
export function dearmorPrefix(text: Buffer, name: string): Buffer {
  const d = new Dearmor(name);
  const out = d.push(text, false);
  return Buffer.concat(out);
}

/**
 * Line-by-line armor decoder: blank lines, the BEGIN line, base64 lines, the END line, blank lines.
 * Between BEGIN and END it is as strict as age's own decoder (the CCTV vectors armor_*): each line
 * canonical padded base64, 64 columns but the last one, nothing else in it but a CR before its LF.
 */
class Dearmor {
  private rest = '';
  private state: 'begin' | 'body' | 'end' = 'begin';
  /** A line shorter than 64 columns (or padded) was read: the next one must be the END line. */
  private short = false;
  constructor(private readonly name: string) {}
  private bad = (why: string) => new BlufioError('E_CORRUPT', `${this.name} is not a valid armored age file: ${why}`, 'use another backup file');
  push(chunk: Buffer, final: boolean): Buffer[] {
    this.rest += chunk.toString('latin1');
    const lines = this.rest.split('\n');
    this.rest = final ? '' : lines.pop()!;
    // No line of an armored file is longer than 64 columns (and its CR, and some spaces): a
    // longer one is refused at once, not gathered (a crafted one took minutes and GiBs).
    if (this.rest.length > 80) throw this.bad('a line is longer than 64 columns');
    const out: Buffer[] = [];
    for (const raw of lines) {
      if (this.state === 'body') {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line === ARMOR_END) {
          this.state = 'end';
          continue;
        }
        if (this.short) throw this.bad('a line shorter than 64 columns (or padded) is not the last one');
        const bytes = line.length <= 64 && line.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(line) ? Buffer.from(line, 'base64') : null;
        if (!bytes || bytes.toString('base64') !== line) throw this.bad('a line is not base64 of 64 columns');
        this.short = bytes.length < 48; // fewer than 64 columns, or padding
        out.push(bytes);
        continue;
      }
      const line = raw.replace(/\r$/, '').trim();
      if (this.state === 'begin') {
        if (line === '') continue;
        if (line !== ARMOR_BEGIN) throw this.bad('it does not start with the BEGIN line');
        this.state = 'body';
      } else if (line !== '') {
        throw this.bad('there is more after the END line');
      }
    }
    if (final && this.state !== 'end') throw this.bad('it is cut off (no END line)');
    return out;
  }
}

/** The binary age file that the armored one `input` holds (what it yields is its own). */
export async function* dearmorChunks(input: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<Uint8Array> {
  const d = new Dearmor(name);
  for await (const piece of input) yield* d.push(Buffer.from(piece.buffer, piece.byteOffset, piece.length), false);
  yield* d.push(Buffer.alloc(0), true);
}

/** True for an armored age file (age -a). */
export function isArmoredAgeFile(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(200);
    return isArmored(b.subarray(0, fs.readSync(fd, b, 0, b.length, 0)));
  } finally {
    fs.closeSync(fd);
  }
}
