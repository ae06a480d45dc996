/**
 * A set of page numbers as one bit a page (128 KiB per million pages): what a full pass found
 * changed in a database of any size, where a Set of numbers was ~40 MiB of heap per GiB of
 * 4 KiB pages. Grows as pages are added; iterates in ascending order.
 */
export class PageBits {
  private bits = new Uint8Array(1024);
  size = 0;

  add(p: number): void {
    const i = p >>> 3;
    if (i >= this.bits.length) {
      const next = new Uint8Array(Math.max(i + 1, this.bits.length * 2));
      next.set(this.bits);
      this.bits = next;
    }
    const m = 1 << (p & 7);
    if (!(this.bits[i] & m)) {
      this.bits[i] |= m;
      this.size++;
    }
  }

  has(p: number): boolean {
    const i = p >>> 3;
    return i < this.bits.length && (this.bits[i] & (1 << (p & 7))) !== 0;
  }

  *[Symbol.iterator](): Generator<number> {
    const b = this.bits;
    for (let i = 0; i < b.length; i++) {
      if (b[i] === 0) continue;
      for (let k = 0; k < 8; k++) if (b[i] & (1 << k)) yield i * 8 + k;
    }
  }
}
