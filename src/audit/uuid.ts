import { randomFillSync } from 'node:crypto';

let lastMs = 0;
let seq = 0;

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

/** RFC 9562 UUIDv7: time-ordered, so audit ids sort by creation and index well. */
export function uuidv7(now = Date.now()): string {
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
}
