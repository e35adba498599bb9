import { randomFillSync } from 'node:crypto';

// Random bytes drawn from the CSPRNG 4 KB at a time (as Node's own randomUUID does): one call per ~200 ids instead
// of two per id.
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

function randomSlice(n: number): Buffer {
  if (poolAt + n > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  poolAt += n;
  return pool.subarray(poolAt - n, poolAt);
}

/**
 * A UUIDv7 generator (RFC 9562): time-ordered, so audit ids sort by creation and index well. It never goes back in
 * time: a clock reading at or before the last one it used takes that millisecond and the next sequence number.
 */
export function uuidv7Generator(): (now?: number) => string {
  let lastMs = 0;
  let seq = 0;
  return (now = Date.now()) => {
    if (now <= lastMs) {
      seq = (seq + 1) & 0xfff;
      if (seq === 0) lastMs += 1; // 4096 ids in one ms: borrow the next ms to stay monotonic
      now = lastMs;
    } else {
      lastMs = now;
      seq = randomSlice(2).readUInt16BE(0) & 0x7ff;
    }
    const b = Buffer.from(randomSlice(16));
    b.writeUIntBE(now, 0, 6);
    b[6] = 0x70 | ((seq >> 8) & 0x0f);
    b[7] = seq & 0xff;
    b[8] = 0x80 | ((b[8] ?? 0) & 0x3f);
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };
}

/** The process's audit ids: one generator, so ids this process makes sort in the order it made them. */
export const uuidv7 = uuidv7Generator();
