#!/usr/bin/env python3
"""Deterministic test trees for freezer's tests and benchmarks.

  treegen.py create DIR --seed N [--profile small|tiny]
      Makes DIR (absent or empty) with a tree that covers what a tar backup must keep:
      nested dirs, names with spaces and UTF-8, one non-UTF-8 byte name, names and a
      symlink target longer than 100 bytes, an empty file, a hard-link pair, an empty dir,
      relative / dangling / absolute / directory symlinks, 0755/0644/0600 files and a 0700
      dir, files of 1 B-200 KB (and tar-block edge sizes), one 2 MB semi-compressible file
      and one sparse file. `tiny` has the same special entries with fewer, smaller files.
  treegen.py mutate DIR --seed N --step K
      Changes the tree the way a day of use would, for incremental level K: appends,
      rewrites (one of them same-size), deletions, new files in a new dir `new_lK/sub dir/`,
      chmod, a file rename, a dir rename, a dir deletion, a dir replaced by a file, a file
      replaced by a dir, a re-targeted symlink. Prints one line per change. mtimes are left
      natural: callers sleep >= 1 s between a backup and the next mutation.
  treegen.py manifest DIR [--no-mtime] [--owner] [--exclude REL]...
      Prints one line per entry under DIR, sorted by path bytes, tab-separated:
        path type mode size sha256 target link mtime [uid:gid]
      type f/d/l/p/s/c/b; mode 4 octal digits; size and sha256 for files; target for
      symlinks; link = the smallest path of the file's hard-link group within DIR; mtime =
      whole seconds, files only. '-' where a field does not apply. Paths and targets are
      escaped: '\\' -> '\\\\', non-printable or non-UTF-8 bytes -> '\\xNN'.
  treegen.py big DIR --seed N [--big-mib 500] [--files 20000] [--dirs 100] [--max-size 51200]
      Benchmark corpus: one file of random base64-alphabet text (gzip keeps ~76%) plus
      small files of 100 B-MAX-SIZE bytes (50 KB), 70% text-like / 30% random. Built in DIR.partial and
      renamed to DIR when complete.

The same seed always gives the same names, contents and modes (mtimes are natural).
"""
import argparse
import hashlib
import math
import os
import random
import stat
import sys

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
B64_TABLE = (ALPHABET * 4)[:252] + b"\n" * 4  # random bytes -> base64-like text lines

PROFILES = {
    # files: count of ordinary src files; big: size of the semi-compressible file;
    # sparse: apparent size of the sparse file.
    "small": {"files": 48, "max_size": 200 * 1024, "big": 2 * 1024 * 1024, "sparse": 8 << 20},
    "tiny": {"files": 12, "max_size": 16 * 1024, "big": 64 * 1024, "sparse": 1 << 20},
}
EDGE_SIZES = [1, 511, 512, 513, 10239, 10240, 10241]
NON_UTF8_NAME = os.fsdecode(b"latin1-\xe9t\xe9.bin")  # invalid UTF-8 on purpose
LONG_DIR = os.path.join("long", "a" * 60, "b" * 60, "c" * 60)


def die(msg):
    print("treegen: " + msg, file=sys.stderr)
    sys.exit(1)


class Content:
    """Seeded content source: text-like, random and base64-like bytes."""

    def __init__(self, rng, corpus_size=1 << 20):
        self.rng = rng
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        words = set()
        while len(words) < 3000:
            n = rng.randint(2, 10)
            words.add("".join(rng.choice(letters) for _ in range(n)))
        self.words = sorted(words)
        weights = [1.0 / (i + 1) for i in range(len(self.words))]  # Zipf-like
        picks = rng.choices(self.words, weights=weights, k=corpus_size // 6)
        lines, line = [], []
        for w in picks:
            line.append(w)
            if len(line) >= rng.randint(6, 14):
                lines.append(" ".join(line))
                line = []
        self.corpus = ("\n".join(lines) + "\n").encode()
        while len(self.corpus) < corpus_size:
            self.corpus += self.corpus
        self.corpus = self.corpus[:corpus_size]

    def text(self, n):
        if n <= 0:
            return b""
        if n >= len(self.corpus):
            reps = n // len(self.corpus) + 1
            return (self.corpus * reps)[:n]
        start = self.rng.randrange(len(self.corpus) - n + 1)
        return self.corpus[start:start + n]

    def random(self, n):
        return self.rng.randbytes(n) if n > 0 else b""

    def b64(self, n):
        return self.rng.randbytes(n).translate(B64_TABLE) if n > 0 else b""

    def for_name(self, name, n):
        return self.text(n) if name.endswith((".txt", ".md", ".sh")) else self.random(n)


def write(root, rel, data, mode=0o644):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def mkdir(root, rel, mode=0o755):
    path = os.path.join(root, rel)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)


def symlink(root, rel, target):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def log_size(rng, lo, hi):
    """Sizes spread evenly on a log scale, so most files are small but some are not."""
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


# ---------------------------------------------------------------------------- create

def create(root, seed, profile_name):
    prof = PROFILES[profile_name]
    if os.path.lexists(root) and (not os.path.isdir(root) or os.listdir(root)):
        die("%s exists and is not an empty directory" % root)
    os.makedirs(root, exist_ok=True)
    rng = random.Random("create:%d" % seed)
    c = Content(rng, corpus_size=256 * 1024)

    write(root, "README.txt", c.text(1500))
    write(root, "empty.txt", b"")
    mkdir(root, "empty_dir")
    write(root, "dir with space/file with space.txt", c.text(700))
    write(root, "dir with space/another  file.bin", c.random(3000))
    write(root, "ünïcödé/日本語 ファイル.txt", c.text(900))
    write(root, "ünïcödé/emoji 🎉.txt", c.text(40))
    write(root, NON_UTF8_NAME, c.random(333))
    write(root, "bin/run.sh", b"#!/bin/sh\necho hello from treegen\n" + c.text(200), 0o755)
    write(root, "bin/tool", c.random(5000), 0o755)
    mkdir(root, "private", 0o700)
    write(root, "private/secret.key", c.random(64), 0o600)
    write(root, "deep/a/b/c/d/e with space/leaf.txt", c.text(1234))
    write(root, "deep/a/b/c/mid.bin", c.random(4321))
    write(root, "deep/a/top.txt", c.text(77))
    write(root, os.path.join(LONG_DIR, "leaf " + "n" * 140 + ".txt"), c.text(600))
    for size in EDGE_SIZES:
        write(root, "edge/size_%d.bin" % size, c.random(size))

    modes = [0o644, 0o644, 0o644, 0o755, 0o600]
    sizes = [1, prof["max_size"]] + [log_size(rng, 1, prof["max_size"])
                                     for _ in range(prof["files"] - 2)]
    for i, size in enumerate(sizes):
        name = "src/mod%d/file_%02d.%s" % (i % 8, i, "txt" if i % 3 else "bin")
        write(root, name, c.for_name(name, size), modes[i % len(modes)])

    write(root, "links/hard_a", c.text(2222))
    os.link(os.path.join(root, "links/hard_a"), os.path.join(root, "links/hard_b"))
    symlink(root, "links/rel", "../src/mod0/file_00.bin")
    symlink(root, "links/dangling", "../no/such/target")
    symlink(root, "links/dir_link", "../deep/a")
    symlink(root, "links/abs", "/nonexistent/freezer-treegen/abs-target")
    long_leaf = os.path.join("..", LONG_DIR, "leaf " + "n" * 140 + ".txt")
    symlink(root, "links/long_target", long_leaf)

    write(root, "big/blob.b64", c.b64(prof["big"]))
    make_sparse(os.path.join(root, "sparse.img"), prof["sparse"], c)


def make_sparse(path, size, c):
    """Data at the start, in the middle and at the end; holes elsewhere."""
    with open(path, "wb") as f:
        f.write(c.random(4096))
        f.seek(size // 2)
        f.write(c.text(8192))
        f.seek(size - 1024)
        f.write(c.random(1024))
    os.chmod(path, 0o644)


# ---------------------------------------------------------------------------- scanning

def sort_key(rel):
    return os.fsencode(rel)


def scan(root, rel=""):
    """(rel, lstat) for every entry under root, depth-first, sorted by bytes."""
    out = []
    base = os.path.join(root, rel) if rel else root
    with os.scandir(base) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    for e in entries:
        r = os.path.join(rel, e.name) if rel else e.name
        st = e.stat(follow_symlinks=False)
        out.append((r, st))
        if stat.S_ISDIR(st.st_mode):
            out.extend(scan(root, r))
    return out


# ---------------------------------------------------------------------------- mutate

PROTECTED = ("links", "sparse.img", "src/mod0", "empty.txt")  # every level keeps these
KEEP = (NON_UTF8_NAME,)  # may change, but is never deleted or renamed


def mutate(root, seed, step):
    if not os.path.isdir(root):
        die("%s is not a directory" % root)
    new_dir = "new_l%d" % step
    if os.path.lexists(os.path.join(root, new_dir)):
        die("step %d looks already applied: %s exists" % (step, new_dir))
    rng = random.Random("mutate:%d:%d" % (seed, step))
    c = Content(rng, corpus_size=128 * 1024)
    touched = []

    def report(*words):
        print(" ".join(escape(w) for w in words))

    def free(rel):
        for t in touched + list(PROTECTED):
            if rel == t or rel.startswith(t + "/") or t.startswith(rel + "/"):
                return False
        return True

    def files(removable=False):
        return [r for r, st in scan(root)
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and free(r)
                and not (removable and r in KEEP)]

    def dirs():
        return [r for r, st in scan(root)
                if stat.S_ISDIR(st.st_mode) and r.startswith(("src/", "new_l")) and free(r)]

    def pick(candidates):
        if not candidates:
            return None
        choice = rng.choice(candidates)
        touched.append(choice)
        return choice

    # New directories before any deletion: GNU tar's listed-incremental matches
    # directories by inode, so a new directory that reuses the inode of one deleted in
    # the same interval is taken for a rename, and `tar --extract --incremental` then
    # fails ("Cannot rename ... Not a directory"). Real, but it would make tests flaky.
    for i in range(4):
        r = "%s/sub dir/added_%d.%s" % (new_dir, i, "txt" if i % 2 else "bin")
        write(root, r, c.for_name(r, rng.randint(0, 30000)))
    write(root, new_dir + "/top.txt", c.text(500), 0o600)
    touched.append(new_dir)
    report("add", new_dir + "/")
    r = pick(files(removable=True))
    if r:
        os.unlink(os.path.join(root, r))
        mkdir(root, r)
        write(root, os.path.join(r, "inside.txt"), c.text(200))
        report("file-to-dir", r)

    # Then the other structural changes: they need untouched directories.
    r = pick(dirs())
    if r:
        dst = "%s_renamed_l%d" % (r, step)
        os.rename(os.path.join(root, r), os.path.join(root, dst))
        touched.append(dst)
        report("rename-dir", r, dst)
    r = pick(dirs())
    if r:
        rmtree(os.path.join(root, r))
        report("delete-dir", r)
    r = pick(dirs())
    if r:
        rmtree(os.path.join(root, r))
        write(root, r, c.text(300))
        report("dir-to-file", r)

    r = pick(files())
    if r:
        path = os.path.join(root, r)
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        new_mode = 0o600 if mode != 0o600 else 0o755
        os.chmod(path, new_mode)
        report("chmod", "%04o" % new_mode, r)
    r = pick(files(removable=True))
    if r:
        dst = os.path.join(os.path.dirname(r), "renamed_l%d_%s" % (step, os.path.basename(r)))
        os.rename(os.path.join(root, r), os.path.join(root, dst))
        touched.append(dst)
        report("rename", r, dst)
    for _ in range(3):
        r = pick(files())
        if r:
            with open(os.path.join(root, r), "ab") as f:
                f.write(c.for_name(r, rng.randint(1, 5000)))
            report("append", r)
    r = pick([f for f in files() if os.path.getsize(os.path.join(root, f)) > 0])
    if r:
        path = os.path.join(root, r)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:  # same size, same inode: only mtime/ctime tell
            f.write(c.random(size))
        report("rewrite-same-size", r)
    for _ in range(2):
        r = pick(files())
        if r:
            write(root, r, c.for_name(r, rng.randint(0, 60000)),
                  stat.S_IMODE(os.lstat(os.path.join(root, r)).st_mode))
            report("rewrite", r)
    for _ in range(3):
        r = pick(files(removable=True))
        if r:
            os.unlink(os.path.join(root, r))
            report("delete", r)


    link = os.path.join(root, "links/rel")
    if os.path.islink(link):
        target = "../README.txt" if step % 2 else "../src/mod0/file_00.bin"
        if os.readlink(link) == target:
            target = "../empty.txt"
        os.unlink(link)
        os.symlink(target, link)
        report("retarget", "links/rel", target)


def rmtree(path):
    for r, st in reversed(scan(path)):
        p = os.path.join(path, r)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(p)
        else:
            os.unlink(p)
    os.rmdir(path)


# ---------------------------------------------------------------------------- manifest

def escape(s):
    out = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
            out.append("\\x%02x" % (o - 0xDC00))
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:
            for b in ch.encode("utf-8"):
                out.append("\\x%02x" % b)
    return "".join(out)


TYPES = [(stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"), (stat.S_ISFIFO, "p"),
         (stat.S_ISSOCK, "s"), (stat.S_ISCHR, "c"), (stat.S_ISBLK, "b")]


def manifest(root, with_mtime=True, with_owner=False, excludes=()):
    if not os.path.isdir(root):
        die("%s is not a directory" % root)
    excludes = [e.strip("/") for e in excludes]
    entries = [(r, st) for r, st in scan(root)
               if not any(r == e or r.startswith(e + "/") for e in excludes)]
    groups = {}
    for r, st in entries:
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), []).append(r)
    leader = {}
    for members in groups.values():
        if len(members) > 1:
            first = min(members, key=sort_key)
            for m in members:
                leader[m] = first
    lines = []
    for r, st in entries:
        kind = next((t for test, t in TYPES if test(st.st_mode)), "?")
        size = digest = target = mtime = "-"
        path = os.path.join(root, r)
        if kind == "f":
            size = str(st.st_size)
            digest = sha256_file(path)
            if with_mtime:
                mtime = str(st.st_mtime_ns // 1_000_000_000)
        elif kind == "l":
            target = escape(os.readlink(path))
        fields = [escape(r), kind, "%04o" % stat.S_IMODE(st.st_mode), size, digest, target,
                  escape(leader[r]) if r in leader else "-", mtime]
        if with_owner:
            fields.append("%d:%d" % (st.st_uid, st.st_gid))
        lines.append("\t".join(fields))
    out = sys.stdout.buffer
    for line in lines:
        out.write(line.encode("utf-8") + b"\n")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- big

def big(root, seed, big_mib, n_files, n_dirs, max_size=50 * 1024):
    if os.path.lexists(root):
        die("%s already exists; remove it first" % root)
    partial = root.rstrip("/") + ".partial"
    if os.path.lexists(partial):
        rmtree(partial)
    os.makedirs(partial)
    rng = random.Random("big:%d" % seed)
    c = Content(rng, corpus_size=16 << 20)

    chunk = 4 << 20
    remaining = big_mib << 20
    with open(os.path.join(partial, "big.b64"), "wb") as f:
        while remaining > 0:
            n = min(chunk, remaining)
            f.write(c.b64(n))
            remaining -= n

    for i in range(n_files):
        d = "d%03d" % (i % n_dirs)
        size = rng.randint(min(100, max_size), max_size)
        if rng.random() < 0.7:
            name, data = "f%05d.txt" % i, c.text(size)
        else:
            name, data = "f%05d.bin" % i, c.random(size)
        path = os.path.join(partial, d, name)
        try:
            f = open(path, "wb")
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path))
            f = open(path, "wb")
        with f:
            f.write(data)
    os.rename(partial, root)


# ---------------------------------------------------------------------------- main

def main():
    os.umask(0o022)
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("create", help="make a test tree")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--profile", choices=sorted(PROFILES), default="small")
    p = sub.add_parser("mutate", help="change a tree for incremental level K")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--step", type=int, required=True)
    p = sub.add_parser("manifest", help="print a sorted manifest of a tree")
    p.add_argument("dir")
    p.add_argument("--no-mtime", action="store_true", help="print '-' for mtimes")
    p.add_argument("--owner", action="store_true", help="add a uid:gid column")
    p.add_argument("--exclude", action="append", default=[], metavar="REL",
                   help="leave out this path and everything under it (repeatable)")
    p = sub.add_parser("big", help="make the benchmark corpus")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--big-mib", type=int, default=500)
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--dirs", type=int, default=100)
    p.add_argument("--max-size", type=int, default=50 * 1024, help="largest small file (bytes)")
    a = ap.parse_args()
    try:
        if a.cmd == "create":
            create(a.dir, a.seed, a.profile)
        elif a.cmd == "mutate":
            mutate(a.dir, a.seed, a.step)
        elif a.cmd == "manifest":
            manifest(a.dir, not a.no_mtime, a.owner, a.exclude)
        elif a.cmd == "big":
            if a.dirs < 1 or a.files < 0 or a.big_mib < 0:
                die("--dirs must be >= 1, --files and --big-mib >= 0")
            big(a.dir, a.seed, a.big_mib, a.files, a.dirs, a.max_size)
    except BrokenPipeError:  # e.g. `manifest | head`
        return 1
    except OSError as e:
        die("%s failed: %s" % (a.cmd, e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
