/**
 * Work done as another user, from root: the effective ids are switched for the span of one
 * synchronous function, so the kernel checks every path it touches as that user. A link that user
 * planted can then lead nowhere the user could not write anyway (docs/security.md).
 */

export interface FileOwner {
  uid: number;
  gid: number;
}

/** Runs `work` with the effective uid and gid of `owner`; without an owner (a sandbox), as we are. */
export function asUser<T>(owner: FileOwner | undefined, work: () => T): T {
  if (!owner || !process.seteuid || !process.setegid || !process.setgroups || !process.getgroups) return work();
  const groups = process.getgroups();
  // Only synchronous calls run in between: no other JavaScript can observe the switched ids.
  process.setgroups([owner.gid]);
  process.setegid(owner.gid);
  process.seteuid(owner.uid);
  try {
    return work();
  } finally {
    process.seteuid(0);
    process.setegid(0);
    process.setgroups(groups);
  }
}
