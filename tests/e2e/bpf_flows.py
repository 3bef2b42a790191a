#!/usr/bin/env python3
"""The SLR fast path's kernel flow map, seen from outside the SLR (e2e tests).

No bpftool on the test machines: this talks to the kernel with the bpf(2)
syscall through ctypes.  The map is found by name (BPF_MAP_GET_NEXT_ID,
BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD); with --pid only maps that
process holds (map_id in /proc/PID/fdinfo) are considered, so other SLRs on
the machine (other test runs) are never touched.  Exactly one map must match.

  bpf_flows.py dump  --pid PID                 entries as JSON
  bpf_flows.py wipe  --pid PID [--watch S]     delete every key (GET_NEXT_KEY +
                                               DELETE_ELEM), count what is left
                                               right after; --watch: then poll
                                               every ms until an entry is back
  bpf_flows.py watch --pid PID --timeout S [--empty] [--sport P]
                                               poll every ms until an entry (with
                                               client port P) is there; --empty:
                                               succeed if none appears in S s

Every command prints one JSON object.  Exit 0 on success, 1 when a watch did
not see what it waited for, 2 on errors (no map, several maps, syscall error).

Layouts (slr/bpf/fast_path.bpf.c): key 40 bytes = src[16] dst[16] (IPv4 in
the first 4 bytes, network order), sport, dport (host order), proto, family,
pad[2]; value 40 bytes = tunnel_dst, tunnel_src (network order), host u16,
vip u16, tcp_flags_seen u8, pad[3], last_seen_ns u64, packets u64, bytes u64.
"""
import argparse
import ctypes
import ctypes.util
import errno
import json
import os
import platform
import socket
import struct
import sys
import time

SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "riscv64": 280}.get(platform.machine())

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_MAP_GET_NEXT_ID = 12
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15

ATTR_SIZE = 128   # >= every command's part of union bpf_attr; the rest stays zero
INFO_SIZE = 80    # struct bpf_map_info up to btf_value_type_id

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(Exception):
    pass


def bpf(cmd, attr):
    if SYS_BPF is None:
        raise BpfError("bpf(2): unknown syscall number on %s" % platform.machine())
    r = _libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_int(cmd), attr, ctypes.c_uint(ATTR_SIZE))
    if r < 0:
        e = ctypes.get_errno()
        return -e
    return r


def _addr(buf):
    return ctypes.addressof(buf)


def map_next_id(start):
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=I", attr, 0, start)
    r = bpf(BPF_MAP_GET_NEXT_ID, attr)
    if r == -errno.ENOENT:
        return None
    if r < 0:
        raise BpfError("BPF_MAP_GET_NEXT_ID: %s" % os.strerror(-r))
    return struct.unpack_from("=I", attr, 4)[0]


def map_fd_by_id(map_id):
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=I", attr, 0, map_id)
    r = bpf(BPF_MAP_GET_FD_BY_ID, attr)
    return r  # fd, or -errno (the map may be gone by now)


def map_info(fd):
    info = ctypes.create_string_buffer(INFO_SIZE)
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=IIQ", attr, 0, fd, INFO_SIZE, _addr(info))
    r = bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    if r < 0:
        raise BpfError("BPF_OBJ_GET_INFO_BY_FD: %s" % os.strerror(-r))
    mtype, mid, ks, vs, maxe, flags = struct.unpack_from("=6I", info, 0)
    name = info.raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
    return {"type": mtype, "id": mid, "key_size": ks, "value_size": vs,
            "max_entries": maxe, "flags": flags, "name": name}


def map_ids_of_pid(pid):
    """map_id of every bpf-map fd the process holds (/proc/PID/fdinfo)."""
    ids = set()
    d = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(d):
        try:
            with open(os.path.join(d, fd)) as f:
                for line in f:
                    if line.startswith("map_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def find_map(name, pid=None, key_size=40, value_size=40):
    """(fd, info) of the one map called NAME (held by PID if given)."""
    owned = map_ids_of_pid(pid) if pid else None
    found, start = [], 0
    while True:
        mid = map_next_id(start)
        if mid is None:
            break
        start = mid
        if owned is not None and mid not in owned:
            continue
        fd = map_fd_by_id(mid)
        if fd < 0:
            continue
        info = map_info(fd)
        if info["name"] == name and info["key_size"] == key_size and info["value_size"] == value_size:
            found.append((fd, info))
        else:
            os.close(fd)
    if len(found) != 1:
        for fd, _ in found:
            os.close(fd)
        raise BpfError("expected exactly one map named %r%s, found %d: %s" % (
            name, " held by pid %d" % pid if pid else "", len(found), [i for _, i in found]))
    return found[0]


class FlowMap:
    def __init__(self, fd, info):
        self.fd, self.info = fd, info
        self.ks, self.vs = info["key_size"], info["value_size"]

    def _elem_attr(self, key, value_or_next):
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("=IIQQ", attr, 0, self.fd, 0,
                         _addr(key) if key is not None else 0,
                         _addr(value_or_next) if value_or_next is not None else 0)
        return attr

    def next_key(self, key=None):
        nk = ctypes.create_string_buffer(self.ks)
        r = bpf(BPF_MAP_GET_NEXT_KEY, self._elem_attr(key, nk))
        if r == -errno.ENOENT:
            return None
        if r < 0:
            raise BpfError("BPF_MAP_GET_NEXT_KEY: %s" % os.strerror(-r))
        return nk

    def keys(self):
        out, k = [], None
        while True:
            k = self.next_key(k)
            if k is None:
                return out
            out.append(k)
            k = ctypes.create_string_buffer(k.raw, self.ks)

    def lookup(self, key):
        v = ctypes.create_string_buffer(self.vs)
        r = bpf(BPF_MAP_LOOKUP_ELEM, self._elem_attr(key, v))
        return v if r == 0 else None

    def delete(self, key):
        r = bpf(BPF_MAP_DELETE_ELEM, self._elem_attr(key, None))
        if r < 0 and r != -errno.ENOENT:
            raise BpfError("BPF_MAP_DELETE_ELEM: %s" % os.strerror(-r))
        return r == 0

    def count(self):
        return len(self.keys())

    def wipe(self):
        """Delete every key: take the first key, delete it, again until none."""
        deleted = []
        while True:
            k = self.next_key(None)
            if k is None:
                return deleted
            deleted.append(decode_key(k.raw))
            self.delete(k)
            if len(deleted) > 10 * max(self.info["max_entries"], 1):
                raise BpfError("wipe: the map does not empty (entries re-added as fast as deleted)")


def decode_key(raw):
    src, dst = socket.inet_ntoa(raw[0:4]), socket.inet_ntoa(raw[16:20])
    sport, dport, proto, family = struct.unpack_from("=HHBB", raw, 32)
    return {"src": "%s:%d" % (src, sport), "dst": "%s:%d" % (dst, dport),
            "sport": sport, "dport": dport, "proto": proto, "family": family}


def decode_value(raw):
    tdst, tsrc = socket.inet_ntoa(raw[0:4]), socket.inet_ntoa(raw[4:8])
    host, vip, flags = struct.unpack_from("=HHB", raw, 8)
    last_seen, packets, nbytes = struct.unpack_from("=QQQ", raw, 16)
    return {"tunnel_dst": tdst, "tunnel_src": tsrc, "host": host, "vip": vip,
            "tcp_flags_seen": flags, "last_seen_ns": last_seen, "packets": packets, "bytes": nbytes}


def entries(m):
    out = []
    for k in m.keys():
        e = decode_key(k.raw)
        v = m.lookup(k)
        if v is not None:
            e.update(decode_value(v.raw))
        out.append(e)
    return out


def watch(m, timeout, sport=None):
    """Poll every ms until an entry (for client port SPORT) is there: ms, or None."""
    t0 = time.monotonic()
    while True:
        for k in m.keys():
            if sport is None or decode_key(k.raw)["sport"] == sport:
                return round((time.monotonic() - t0) * 1000.0, 2)
        if time.monotonic() - t0 >= timeout:
            return None
        time.sleep(0.001)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["dump", "wipe", "watch"])
    ap.add_argument("--pid", type=int, help="only maps this process holds")
    ap.add_argument("--name", default="flows")
    ap.add_argument("--watch", type=float, default=0.0, help="wipe: then wait up to S s for an entry")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--empty", action="store_true", help="watch: succeed if nothing appears")
    ap.add_argument("--sport", type=int, help="watch: only an entry with this client port")
    a = ap.parse_args()
    try:
        fd, info = find_map(a.name, a.pid)
        m = FlowMap(fd, info)
        out = {"map_id": info["id"], "map_name": info["name"], "max_entries": info["max_entries"]}
        rc = 0
        if a.cmd == "dump":
            out["entries"] = entries(m)
        elif a.cmd == "wipe":
            t0 = time.time()
            out["deleted"] = m.wipe()
            out["wipe_ms"] = round((time.time() - t0) * 1000.0, 3)
            out["left"] = m.count()   # right after the last delete
            out["wiped_at"] = t0
            if a.watch > 0:
                out["reappeared_ms"] = watch(m, a.watch, a.sport)
                out["entries"] = entries(m)
                rc = 0 if out["reappeared_ms"] is not None else 1
        else:
            ms = watch(m, a.timeout, a.sport)
            out["appeared_ms"] = ms
            out["entries"] = entries(m)
            rc = (0 if ms is None else 1) if a.empty else (0 if ms is not None else 1)
        print(json.dumps(out))
        return rc
    except (BpfError, OSError) as e:
        print(json.dumps({"error": str(e)}))
        return 2


if __name__ == "__main__":
    sys.exit(main())
