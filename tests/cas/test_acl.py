"""POSIX ACLs: the xattr format, the mode rules, and how a Volume keeps them.

The format tests compare cas.acl with a reference model written another
way (sort and count instead of a state machine); the rule tests check the
POSIX.1e properties each rule must have.
"""

from __future__ import annotations

import errno
import stat
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas import FsError, acl
from cas.acl import GROUP, GROUP_OBJ, MASK, OTHER, UNDEFINED_ID, USER, USER_OBJ, Entry

RANK = {USER_OBJ: 0, USER: 1, GROUP_OBJ: 2, GROUP: 3, MASK: 4, OTHER: 5}
ID_MAX = UNDEFINED_ID - 1  # the largest id a named entry may carry

perms = st.integers(0, 7)
ids = st.integers(0, ID_MAX)


@st.composite
def valid_acls(draw, minimal_ok=True):
    users = sorted(draw(st.sets(ids, max_size=5)))
    groups = sorted(draw(st.sets(ids, max_size=5)))
    out = [Entry(USER_OBJ, draw(perms))]
    out += [Entry(USER, draw(perms), u) for u in users]
    out.append(Entry(GROUP_OBJ, draw(perms)))
    out += [Entry(GROUP, draw(perms), g) for g in groups]
    if users or groups or draw(st.booleans()):
        out.append(Entry(MASK, draw(perms)))
    out.append(Entry(OTHER, draw(perms)))
    return tuple(out)


def raw(entries, version=2) -> bytes:
    """An xattr value of (tag, perm, id) triples, however wrong."""
    return struct.pack("<I", version) + b"".join(struct.pack("<HHI", *e) for e in entries)


def triples(a):
    return [(e.tag, e.perm, e.id) for e in a]


def model_valid(entries) -> bool:
    """The reference: the rules of posix_acl_valid, stated by counting and sorting."""
    tags = [t for t, _, _ in entries]
    if any(t not in RANK for t in tags) or any(p & ~7 for _, p, _ in entries):
        return False
    if any(tags.count(t) != 1 for t in (USER_OBJ, GROUP_OBJ, OTHER)) or tags.count(MASK) > 1:
        return False
    if (USER in tags or GROUP in tags) and MASK not in tags:
        return False
    if any(i == UNDEFINED_ID for t, _, i in entries if t in (USER, GROUP)):
        return False
    keys = [(RANK[t], i if t in (USER, GROUP) else 0) for t, _, i in entries]
    return keys == sorted(set(keys)) and len(set(keys)) == len(keys)


def model_permits(a, uid, owner, groups, group, want) -> bool:
    """The reference access check: find the matching class, then decide."""
    mask = next((e.perm for e in a if e.tag == MASK), 7)
    if uid == owner:
        return next(e.perm for e in a if e.tag == USER_OBJ) & want == want
    named = [e for e in a if e.tag == USER and e.id == uid]
    if named:
        return named[0].perm & mask & want == want
    matching = [e for e in a if (e.tag == GROUP_OBJ and group in groups)
                or (e.tag == GROUP and e.id in groups)]
    if matching:
        return any(e.perm & mask & want == want for e in matching)
    return next(e.perm for e in a if e.tag == OTHER) & want == want


# ----------------------------------------------------------------- format

@given(valid_acls())
def test_valid_acls_round_trip(a):
    value = acl.encode(a)
    assert len(value) == 4 + 8 * len(a)
    assert acl.decode(value) == a
    assert acl.encode(acl.decode(value)) == value


@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, 4, 8, 0x10, 0x20, 0x40, 0xFFFF]),
                          st.sampled_from([0, 4, 7, 8, 0xFFFF]),
                          st.sampled_from([0, 1, 5, 1000, ID_MAX, UNDEFINED_ID])), max_size=8))
@settings(max_examples=400)
def test_decode_agrees_with_the_model(entries):
    """Any entry list is refused with EINVAL exactly when the model says it is invalid;
    an accepted one is stored losslessly (re-encodes to a value that decodes the same)."""
    value = raw(entries)
    if not entries:
        assert acl.decode(value) is None
        return
    if model_valid(entries):
        a = acl.decode(value)
        assert [(t, p, i if t in (USER, GROUP) else UNDEFINED_ID) for t, p, i in entries] == triples(a)
        assert acl.decode(acl.encode(a)) == a
    else:
        with pytest.raises(FsError) as ei:
            acl.decode(value)
        assert ei.value.errno == errno.EINVAL


@given(st.binary(max_size=80))
def test_any_bytes_are_refused_or_kept(value):
    try:
        a = acl.decode(value)
    except FsError as exc:
        assert exc.errno in (errno.EINVAL, errno.EOPNOTSUPP)
        return
    if a is not None:
        assert model_valid(triples(a))
        assert acl.decode(acl.encode(a)) == a


@st.composite
def malformed(draw):
    """A valid ACL broken in one of the ways posix_acl_valid refuses."""
    a = list(triples(draw(valid_acls())))
    how = draw(st.sampled_from(["swap", "dup", "drop", "nomask", "perm", "tag", "id", "len"]))
    if how == "swap":
        i = draw(st.integers(0, len(a) - 2))
        j = draw(st.integers(i + 1, len(a) - 1))
        if a[i][0] == a[j][0] and a[i][0] not in (USER, GROUP):
            j = len(a) - 1 if i != len(a) - 1 else 0
        a[i], a[j] = a[j], a[i]
        if model_valid(a):  # swapped two named entries of equal id order? force a repeat
            a.insert(0, a[0])
    elif how == "dup":
        i = draw(st.integers(0, len(a) - 1))
        a.insert(i, a[i])
    elif how == "drop":
        tag = draw(st.sampled_from([USER_OBJ, GROUP_OBJ, OTHER]))
        a = [e for e in a if e[0] != tag]
    elif how == "nomask":
        a = [e for e in a if e[0] != MASK]
        a.insert(1, (USER, 4, draw(ids)))
    elif how == "perm":
        i = draw(st.integers(0, len(a) - 1))
        a[i] = (a[i][0], a[i][1] | draw(st.sampled_from([8, 0x10, 0x8000])), a[i][2])
    elif how == "tag":
        i = draw(st.integers(0, len(a) - 1))
        a[i] = (draw(st.sampled_from([0, 3, 0x40, 0x8000])), a[i][1], a[i][2])
    elif how == "id":
        a = [e for e in a if e[0] != MASK]
        a.insert(1, (USER, 7, UNDEFINED_ID))
        a.insert(-1, (MASK, 7, UNDEFINED_ID))
    assert not model_valid(a) or how == "len"
    value = raw(a)
    if how == "len":
        value = value[:-draw(st.integers(1, 7))] if draw(st.booleans()) else value + b"\0" * draw(st.integers(1, 7))
    return value


@given(malformed())
@settings(max_examples=300)
def test_every_malformed_acl_is_einval(value):
    with pytest.raises(FsError) as ei:
        acl.decode(value)
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("version", [0, 1, 3, 0xFFFFFFFF])
def test_other_versions_are_eopnotsupp_as_linux(version):
    with pytest.raises(FsError) as ei:
        acl.decode(raw(triples(acl.from_mode(0o644)), version))
    assert ei.value.errno == errno.EOPNOTSUPP


def test_empty_value_and_bare_header_mean_no_acl():
    assert acl.decode(b"") is None
    assert acl.decode(raw([])) is None


def test_ids_of_unnamed_entries_are_ignored_and_extreme_named_ids_kept():
    value = raw([(USER_OBJ, 6, 5), (USER, 4, ID_MAX), (GROUP_OBJ, 4, 7), (GROUP, 1, 0),
                 (MASK, 6, 9), (OTHER, 0, 0)])
    a = acl.decode(value)
    assert [e.id for e in a] == [UNDEFINED_ID, ID_MAX, UNDEFINED_ID, 0, UNDEFINED_ID, UNDEFINED_ID]


# ------------------------------------------------------------------ rules

@given(valid_acls(), st.integers(0, 0o7777))
def test_update_mode(a, mode):
    new, stored = acl.update_mode(a, stat.S_IFREG | mode)
    tags = {e.tag for e in a}
    assert new & ~0o777 == stat.S_IFREG | (mode & 0o7000)
    owner = next(e.perm for e in a if e.tag == USER_OBJ)
    group = next(e.perm for e in a if e.tag == (MASK if MASK in tags else GROUP_OBJ))
    other = next(e.perm for e in a if e.tag == OTHER)
    assert new & 0o777 == owner << 6 | group << 3 | other
    if tags <= {USER_OBJ, GROUP_OBJ, OTHER}:
        assert stored is None  # the mode says it all
        assert acl.from_mode(new) == a
    else:
        assert stored == a


@given(valid_acls(), st.integers(0, 0o777))
def test_chmod_rewrites_owner_mask_other(a, mode):
    b = acl.chmod(a, mode)
    assert acl.equiv_mode(b, 0)[0] == mode
    # named entries, and the owning group behind a mask, are untouched
    has_mask = any(e.tag == MASK for e in a)
    keep = {USER, GROUP} | ({GROUP_OBJ} if has_mask else set())
    assert [e for e in b if e.tag in keep] == [e for e in a if e.tag in keep]
    assert acl.decode(acl.encode(b)) == b


@given(valid_acls(), st.integers(0, 0o7777))
def test_inherit_masks_the_default_by_the_create_mode(default, mode):
    new, access = acl.inherit(default, stat.S_IFREG | mode)
    result = access if access is not None else acl.from_mode(new)
    assert new & ~0o777 == stat.S_IFREG | (mode & 0o7000)
    assert acl.equiv_mode(result, 0)[0] == new & 0o777
    # every permission is within both the default's and the create mode's
    assert new & 0o777 & ~(mode & 0o777) == 0
    assert new & 0o777 & ~acl.equiv_mode(default, 0)[0] == 0
    assert [e.tag for e in result] == [e.tag for e in default]
    assert access is None or any(e.tag == MASK for e in access)


@given(valid_acls(), st.integers(0, 9), st.integers(0, 9), st.sets(st.integers(0, 9)),
       st.integers(0, 9), st.integers(1, 7))
def test_permits_matches_the_model(a, uid, owner, groups, group, want):
    a = tuple(Entry(e.tag, e.perm, e.id % 10) if e.tag in (USER, GROUP) else e for e in a)
    a = tuple(sorted({(RANK[e.tag], e.id): e for e in a}.values(), key=lambda e: (RANK[e.tag], e.id)))
    acl.validate(a)
    assert acl.permits(a, uid, owner, groups.__contains__, group, want) == \
        model_permits(a, uid, owner, groups, group, want)


# --------------------------------------------------------------- on a volume

def A(*entries):
    return acl.encode(tuple(Entry(*e) for e in entries))


NAMED = A((USER_OBJ, 7), (USER, 5, 1000), (GROUP_OBJ, 5), (MASK, 5), (OTHER, 0))


def test_setting_an_access_acl_sets_the_mode(vol):
    a = vol.create(vol.root, b"f", 0o600, 0, 0)
    vol.setxattr(a.ino, acl.ACCESS, NAMED)
    assert vol.getattr(a.ino).mode == stat.S_IFREG | 0o750
    assert vol.getxattr(a.ino, acl.ACCESS) == NAMED
    assert acl.ACCESS in vol.listxattr(a.ino)


def test_an_acl_equivalent_to_the_mode_is_stored_as_the_mode(vol):
    a = vol.create(vol.root, b"f", 0o600, 0, 0)
    vol.setxattr(a.ino, acl.ACCESS, NAMED)
    vol.setxattr(a.ino, acl.ACCESS, A((USER_OBJ, 6), (GROUP_OBJ, 4), (OTHER, 1)))
    assert vol.getattr(a.ino).mode == stat.S_IFREG | 0o641
    with pytest.raises(FsError) as ei:
        vol.getxattr(a.ino, acl.ACCESS)
    assert ei.value.errno == errno.ENODATA
    assert acl.ACCESS not in vol.listxattr(a.ino)


def test_malformed_acl_is_refused_and_not_stored(vol):
    a = vol.create(vol.root, b"f", 0o640, 0, 0)
    vol.setxattr(a.ino, acl.ACCESS, NAMED)
    for bad in (NAMED[:-1], NAMED[:4] + NAMED[12:], raw([(USER_OBJ, 7, 0), (USER, 7, UNDEFINED_ID),
                                                        (GROUP_OBJ, 7, 0), (MASK, 7, 0), (OTHER, 7, 0)])):
        with pytest.raises(FsError) as ei:
            vol.setxattr(a.ino, acl.ACCESS, bad)
        assert ei.value.errno == errno.EINVAL
    assert vol.getxattr(a.ino, acl.ACCESS) == NAMED
    assert vol.getattr(a.ino).mode == stat.S_IFREG | 0o750


def test_chmod_updates_the_stored_acl(vol):
    a = vol.create(vol.root, b"f", 0o600, 0, 0)
    vol.setxattr(a.ino, acl.ACCESS, NAMED)
    vol.setattr(a.ino, mode=0o604)
    assert vol.getxattr(a.ino, acl.ACCESS) == A((USER_OBJ, 6), (USER, 5, 1000), (GROUP_OBJ, 5),
                                                (MASK, 0), (OTHER, 4))


def test_removing_acls(vol):
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    vol.setxattr(d.ino, acl.ACCESS, NAMED)
    vol.setxattr(d.ino, acl.DEFAULT, NAMED)
    vol.removexattr(d.ino, acl.ACCESS)
    vol.setxattr(d.ino, acl.DEFAULT, b"")  # an empty value removes, as setxattr(2) does
    assert vol.listxattr(d.ino) == []
    assert vol.getattr(d.ino).mode == stat.S_IFDIR | 0o750  # removal leaves the mode
    vol.removexattr(d.ino, acl.ACCESS)  # absent: succeeds, as on ext4 and tmpfs


def test_default_acl_only_on_directories(vol):
    f = vol.create(vol.root, b"f", 0o600, 0, 0)
    with pytest.raises(FsError) as ei:
        vol.setxattr(f.ino, acl.DEFAULT, NAMED)
    assert ei.value.errno == errno.EACCES
    vol.removexattr(f.ino, acl.DEFAULT)
    s = vol.symlink(vol.root, b"s", b"f", 0, 0)
    with pytest.raises(FsError) as ei:
        vol.setxattr(s.ino, acl.ACCESS, NAMED)
    assert ei.value.errno == errno.EOPNOTSUPP


def test_inheritance(env):
    vol = env.vol
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    vol.setxattr(d.ino, acl.DEFAULT, NAMED)
    f = vol.create(d.ino, b"f", 0o666, 0, 0)
    assert f.mode == stat.S_IFREG | 0o640
    assert vol.getxattr(f.ino, acl.ACCESS) == A((USER_OBJ, 6), (USER, 5, 1000), (GROUP_OBJ, 5),
                                                (MASK, 4), (OTHER, 0))
    assert acl.DEFAULT not in vol.listxattr(f.ino)
    sub = vol.mkdir(d.ino, b"sub", 0o777, 0, 0)
    assert sub.mode == stat.S_IFDIR | 0o750
    assert vol.getxattr(sub.ino, acl.DEFAULT) == NAMED
    assert vol.getxattr(sub.ino, acl.ACCESS) == NAMED
    deeper = vol.mknod(sub.ino, b"fifo", stat.S_IFIFO | 0o600, 0, 0, 0)
    assert deeper.mode == stat.S_IFIFO | 0o600
    assert vol.getxattr(deeper.ino, acl.ACCESS) == A((USER_OBJ, 6), (USER, 5, 1000), (GROUP_OBJ, 5),
                                                     (MASK, 0), (OTHER, 0))
    link = vol.symlink(d.ino, b"l", b"f", 0, 0)
    assert vol.listxattr(link.ino) == []
    # minimal default ACL: the new file's mode is the create mode masked, no xattr
    vol.setxattr(d.ino, acl.DEFAULT, A((USER_OBJ, 7), (GROUP_OBJ, 0), (OTHER, 5)))
    g = vol.create(d.ino, b"g", 0o666, 0, 0)
    assert g.mode == stat.S_IFREG | 0o604 and vol.listxattr(g.ino) == []
    # all of it is committed and survives a reopen with a cold cache
    env.store.commit()
    vol = env.reopen()
    f2 = vol.resolve(b"d/f")
    assert f2.mode == stat.S_IFREG | 0o640
    assert vol.getxattr(f2.ino, acl.ACCESS) == A((USER_OBJ, 6), (USER, 5, 1000), (GROUP_OBJ, 5),
                                                 (MASK, 4), (OTHER, 0))
    assert vol.getxattr(vol.resolve(b"d/sub").ino, acl.DEFAULT) == NAMED


def test_snapshots_clones_diff_and_send_receive_carry_acls(env, tmp_path):
    import io

    from cas import Store
    from cas.receive import receive_snapshot
    from cas.send import send_snapshot

    store, vol = env.store, env.vol
    f = vol.create(vol.root, b"f", 0o600, 0, 0)
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    vol.setxattr(f.ino, acl.ACCESS, NAMED)
    vol.setxattr(d.ino, acl.DEFAULT, NAMED)
    store.create_snapshot("main", "s1")
    vol.setattr(f.ino, mode=0o600)  # changes the stored ACL's mask
    store.create_snapshot("main", "s2")
    assert vol.getxattr(f.ino, acl.ACCESS) != NAMED
    snap = store.snapshot_volume("main", "s1")
    sf = snap.resolve(b"f")
    assert snap.getxattr(sf.ino, acl.ACCESS) == NAMED and sf.mode & 0o777 == 0o750
    assert snap.getxattr(snap.resolve(b"d").ino, acl.DEFAULT) == NAMED
    changed = {(e.kind, e.path) for e in store.diff("main", "s1", "s2")}
    assert ("M", b"/f") in changed
    store.clone("main", "s1", "copy")
    cv = store.volume("copy")
    assert cv.getxattr(cv.resolve(b"f").ino, acl.ACCESS) == NAMED
    assert cv.getxattr(cv.resolve(b"d").ino, acl.DEFAULT) == NAMED
    buf = io.BytesIO()
    send_snapshot(store, "main", "s1", buf)
    other = Store.open(str(tmp_path / "other"), create=True)
    try:
        receive_snapshot(other, "got", io.BytesIO(buf.getvalue()))
        rv = other.volume("got")
        rf = rv.resolve(b"f")
        assert rv.getxattr(rf.ino, acl.ACCESS) == NAMED and rf.mode & 0o777 == 0o750
        assert rv.getxattr(rv.resolve(b"d").ino, acl.DEFAULT) == NAMED
    finally:
        other.close()


def test_permission_lookups_find_acls_however_they_arrived(env, tmp_path):
    """``access_acl`` (what permission checks read) skips lookups only while the
    store holds no ACL: it sees ACLs set, inherited, reopened and received."""
    import io

    from cas import Store
    from cas.receive import receive_snapshot
    from cas.send import send_snapshot

    store, vol = env.store, env.vol
    f = vol.create(vol.root, b"f", 0o600, 0, 0)
    assert not store.catalog.has_acls and vol.access_acl(f.ino) is None
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    vol.setxattr(d.ino, acl.DEFAULT, NAMED)
    g = vol.create(d.ino, b"g", 0o640, 0, 0)  # inherits an access ACL
    assert store.catalog.has_acls and vol.access_acl(g.ino) == vol.getxattr(g.ino, acl.ACCESS)
    vol.setxattr(f.ino, acl.ACCESS, NAMED)
    assert vol.access_acl(f.ino) == NAMED
    store.create_snapshot("main", "s")
    assert store.snapshot_volume("main", "s").access_acl(f.ino) == NAMED
    vol = env.reopen()
    assert env.store.catalog.has_acls and vol.access_acl(vol.resolve(b"f").ino) == NAMED
    buf = io.BytesIO()
    send_snapshot(env.store, "main", "s", buf)
    other = Store.open(str(tmp_path / "other"), create=True)
    try:
        other.create_dataset("plain")
        assert not other.catalog.has_acls
        receive_snapshot(other, "got", io.BytesIO(buf.getvalue()))
        assert other.catalog.has_acls
        rv = other.volume("got")
        assert rv.access_acl(rv.resolve(b"f").ino) == NAMED
    finally:
        other.close()
