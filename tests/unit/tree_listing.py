"""A listing of everything observable under a path, to compare trees before and after a restore."""
import hashlib
import os
import stat


def listing(path):
    """Everything observable about a path: {rel: (type, mode, uid, gid, sha256 or link target)}."""
    out = {}
    if not os.path.lexists(path):
        return out
    stack = ["."]
    while stack:
        rel = stack.pop()
        full = path if rel == "." else os.path.join(path, rel)
        st_ = os.lstat(full)
        if stat.S_ISLNK(st_.st_mode):
            out[rel] = ("link", None, st_.st_uid, st_.st_gid, os.readlink(full))
        elif stat.S_ISDIR(st_.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid, None)
            for name in os.listdir(full):
                stack.append(name if rel == "." else rel + "/" + name)
        else:
            with open(full, "rb") as stream:
                digest = hashlib.sha256(stream.read()).hexdigest()
            out[rel] = ("file", stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid, digest)
    return out
