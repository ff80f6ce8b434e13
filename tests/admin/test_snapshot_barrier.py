"""The snapshot barrier through the admin API while a 9P client writes."""

from __future__ import annotations


async def test_concurrent_snapshots_while_a_client_writes(live, api):
    """Each snapshot holds every write answered before its creation, none after its reply."""
    import trio

    acked: list[tuple[int, float]] = []  # (sequence number, time its Rwrite arrived)
    snaps: list[tuple[str, float, float]] = []  # (name, request sent, reply received)
    stop = trio.Event()

    async def writer():
        async with live.connect() as c:
            f = await c.create(b"log", 2)
            seq = 0
            while not stop.is_set():
                await c.write(f.fid, seq * 8, seq.to_bytes(8, "little"))
                acked.append((seq, trio.current_time()))
                seq += 1
            await c.clunk(f.fid)

    async def snapshotter():
        for i in range(6):
            await trio.sleep(0.15)
            sent = trio.current_time()
            r = await api.post("/v1/datasets/main/snapshots", json={"name": f"c{i}"})
            assert r.status_code == 201, r.text
            snaps.append((f"c{i}", sent, trio.current_time()))
        stop.set()

    async with trio.open_nursery() as n:
        n.start_soon(writer)
        n.start_soon(snapshotter)
    async with live.connect() as c:
        for name, sent, replied in snaps:
            data = await c.read_file(f".snapshots/{name}/log".encode())
            count = len(data) // 8
            assert data == b"".join(i.to_bytes(8, "little") for i in range(count)), "a torn snapshot"
            before = max((s for s, t in acked if t < sent), default=-1)
            after = min((s for s, t in acked if t > replied + 0.05), default=None)
            assert count - 1 >= before, f"{name} lost write {before} answered before the request"
            if after is not None:
                assert count - 1 < after, f"{name} holds write {after} sent after its reply"
