/**
 * An .xz container for data the cos-agent relation carries (dashboards): what Python's
 * lzma.decompress on the other side reads.
 */
import { crc32 } from './crc32';

const u32le = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const withCrc = (b: Buffer) => Buffer.concat([b, u32le(crc32(b))]);
const padTo4 = (length: number) => Buffer.alloc((4 - (length % 4)) % 4);

/** xz's variable-length integers: 7 bits a byte, low first. */
function varint(n: number): Buffer {
  const bytes: number[] = [];
  for (let v = n; ; v = Math.floor(v / 128)) {
    if (v < 128) return Buffer.from([...bytes, v]);
    bytes.push((v % 128) | 0x80);
  }
}

/**
 * An .xz stream (what Python's lzma.compress writes and lzma.decompress reads) whose LZMA2
 * chunks are stored, not compressed: Node has no LZMA encoder, and every xz decoder takes stored
 * chunks. Dashboards are tens of kilobytes, well within what relation data carries.
 */
export function xzStored(data: Buffer): Buffer {
  const STREAM_FLAGS = Buffer.from([0x00, 0x01]); // check: CRC32
  const header = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), withCrc(STREAM_FLAGS)]);
  // Block header: size, flags (one filter), LZMA2 (id 0x21, one property byte: 4 KiB dictionary), padding.
  const blockHeader = withCrc(Buffer.from([0x02, 0x00, 0x21, 0x01, 0x00, 0x00, 0x00, 0x00]));
  const chunks: Buffer[] = [];
  const CHUNK = 0x10000;
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    const piece = data.subarray(offset, offset + CHUNK);
    // 0x01: stored chunk resetting the dictionary (the first); 0x02: stored, no reset.
    chunks.push(Buffer.from([offset === 0 ? 0x01 : 0x02, (piece.length - 1) >> 8, (piece.length - 1) & 0xff]), piece);
  }
  const compressed = Buffer.concat([...chunks, Buffer.from([0x00])]);
  const unpadded = blockHeader.length + compressed.length;
  const check = u32le(crc32(data));
  const block = Buffer.concat([blockHeader, compressed, padTo4(unpadded), check]);
  const indexBody = Buffer.concat([Buffer.from([0x00]), varint(1), varint(unpadded + check.length), varint(data.length)]);
  const index = withCrc(Buffer.concat([indexBody, padTo4(indexBody.length)]));
  const footerFields = Buffer.concat([u32le(index.length / 4 - 1), STREAM_FLAGS]);
  // The footer's CRC comes before the fields it covers.
  const footer = Buffer.concat([u32le(crc32(footerFields)), footerFields, Buffer.from('YZ')]);
  return Buffer.concat([header, block, index, footer]);
}
