/**
 * SHA-256 (FIPS 180-4) in plain JavaScript, for the one digest an idle agent needs: its lock
 * name. Loading node:crypto starts OpenSSL, which costs every agent about 0.6 MiB of private
 * memory on Node 24 (bench/results.md); the lock name must stay the same digest across runtime
 * versions, so it is the same algorithm, not a cheaper hash.
 */

const ROUND_CONSTANTS = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL_HASH = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));

/** The message with its padding: a 1 bit, zeros, and its length in bits, to a multiple of 64 bytes. */
function padded(message: Buffer): Buffer {
  const length = Math.ceil((message.length + 9) / 64) * 64;
  const block = Buffer.alloc(length);
  message.copy(block);
  block[message.length] = 0x80;
  const bits = message.length * 8;
  block.writeUInt32BE(Math.floor(bits / 2 ** 32), length - 8);
  block.writeUInt32BE(bits >>> 0, length - 4);
  return block;
}

/** One 64-byte block folded into the running hash state. */
function compress(state: number[], block: Buffer, offset: number, w: Uint32Array): void {
  for (let t = 0; t < 16; t++) w[t] = block.readUInt32BE(offset + t * 4);
  for (let t = 16; t < 64; t++) {
    const w15 = w[t - 15] as number;
    const w2 = w[t - 2] as number;
    const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
    const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
    w[t] = (w[t - 16] as number) + s0 + (w[t - 7] as number) + s1;
  }
  let [a, b, c, d, e, f, g, h] = state as [number, number, number, number, number, number, number, number];
  for (let t = 0; t < 64; t++) {
    const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + (ROUND_CONSTANTS[t] as number) + (w[t] as number)) >>> 0;
    const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) >>> 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) >>> 0;
  }
  [a, b, c, d, e, f, g, h].forEach((v, i) => (state[i] = ((state[i] as number) + v) >>> 0));
}

/** The SHA-256 of text's UTF-8 bytes, as 64 lowercase hex digits (what createHash gives). */
export function sha256Hex(text: string): string {
  const block = padded(Buffer.from(text, 'utf8'));
  const state = [...INITIAL_HASH];
  const w = new Uint32Array(64);
  for (let offset = 0; offset < block.length; offset += 64) compress(state, block, offset, w);
  return state.map((v) => v.toString(16).padStart(8, '0')).join('');
}
