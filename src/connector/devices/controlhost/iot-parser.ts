/**
 * control_host_iot's URL check (upstream's parser module): each image URL must be well formed.
 * Whether it can be fetched is the control host's to find out; it downloads the images.
 */

/** Schemes a download URL may have; host names as DNS has them, or an address. */
const SCHEMES = new Set(['http:', 'https:', 'ftp:', 'ftps:']);
const HOST = /^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$/;

export function isImageUrl(text: string): boolean {
  if (/[\s\x00-\x1f\x7f]/.test(text)) return false;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return SCHEMES.has(url.protocol) && HOST.test(url.hostname);
}

/** Throws upstream's message for the first URL that is not well formed. */
export function validateUrls(urls: readonly string[]): void {
  for (const url of urls) if (!isImageUrl(url)) throw new Error('url format is not correct');
}
