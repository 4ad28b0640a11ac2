"""What the benchmark sends: tenants, caller JWTs, Zipf-picked callers and the wrk scripts."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import asyncpg
import jwt
import orjson

from gateway.ops.migrate import migrate

HERE = Path(__file__).resolve().parent
PATH = "/api/v1/dashboards/iframe-token"
WORKSPACE = "ws-bench"
JWT_SECRET = "bench-caller-jwt-secret-" + "x" * 40
SIGNING_SECRET = "bench-signing-secret-" + "y" * 40
API_KEY_ID = "key-bench"
MIX_TENANTS, MIX_CALLERS, MIX_MISS_SHARE, ZIPF_S = 10_000, 50_000, 0.05, 1.0


@dataclass
class Workload:
    """Files wrk reads, and what the scenarios need to know about them."""

    work: Path
    hit_script: Path
    warm_script: Path
    list_script: Path
    mix_callers: Path
    mix_seq: Path
    mix_seq_len: int
    mix_warm: Path
    miss_callers: Path
    miss_seq: Path
    miss_seq_len: int
    tenants: list[str]

    def mix_args(self, start: int, threads: int) -> list[str]:
        """requests.lua's arguments for the mix from position `start`."""
        return [str(self.mix_callers), str(self.mix_seq), str(start), str(threads)]

    def miss_args(self, start: int, threads: int) -> list[str]:
        """requests.lua's arguments for never-seen tenants from position `start`."""
        return [str(self.miss_callers), str(self.miss_seq), str(start), str(threads)]

    def warm_args(self, start: int, threads: int) -> list[str]:
        """requests.lua's arguments for one request per mix tenant from position `start`."""
        return [str(self.mix_callers), str(self.mix_warm), str(start), str(threads)]


def caller_jwt(tenant: str, sub: str) -> str:
    """A caller JWT signed with the bench's HS256 secret, valid for four hours."""
    now = int(time.time())
    claims = {"sub": sub, "organization_id": tenant, "iat": now, "exp": now + 4 * 3600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def body(tenant: str) -> str:
    """The token request's JSON body for `tenant`."""
    return orjson.dumps({"tenant_id": tenant, "workspace_id": WORKSPACE}).decode()


def write_callers(path: Path, callers: list[tuple[str, str]]) -> None:
    """One "jwt<TAB>body" line per (tenant, subject), as requests.lua reads them."""
    path.write_text("".join(f"{caller_jwt(t, s)}\t{body(t)}\n" for t, s in callers))


def static_script(path: Path, tenant: str) -> None:
    """A fixed POST: wrk builds it once, as a frontend repeating one call would."""
    lua = (
        'wrk.method = "POST"\n'
        f"wrk.body = '{body(tenant)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {caller_jwt(tenant, "user-hit")}"\n'
    )
    path.write_text(lua + (HERE / "done.lua").read_text())


def _zipf_sequence(rng: random.Random, length: int, first_miss: int, last: int) -> list[int]:
    """1-based caller indexes: Zipf over the mix's callers, a share of never-seen ones."""
    ranks = list(range(1, MIX_CALLERS + 1))
    rng.shuffle(ranks)  # popularity is not ordered by tenant name
    cum = list(accumulate(1.0 / (r**ZIPF_S) for r in ranks))
    draws = iter(rng.choices(range(1, MIX_CALLERS + 1), cum_weights=cum, k=length))
    seq: list[int] = []
    next_miss = first_miss
    for _ in range(length):
        if rng.random() < MIX_MISS_SHARE and next_miss < last:
            next_miss += 1
            seq.append(next_miss)
        else:
            seq.append(next(draws))
    return seq


def build_workload(work: Path, miss_tenants: int, mix_len: int) -> Workload:
    """Tenants, caller JWTs and request sequences (Zipf over callers, a share of never-seen)."""
    rng = random.Random(6)
    mix = [f"mix-{i:05d}" for i in range(MIX_TENANTS)]
    mix_miss = [f"mixmiss-{i:06d}" for i in range(int(mix_len * MIX_MISS_SHARE * 1.2) + 1)]
    miss = [f"miss-{i:06d}" for i in range(miss_tenants)]
    tenants = ["bench-hit", "bench-warm", *mix, *mix_miss, *miss]

    # 50,000 callers, five per tenant; callers after them are the never-seen tenants' ones.
    callers = [(mix[i % MIX_TENANTS], f"user-{i}") for i in range(MIX_CALLERS)]
    callers += [(t, f"user-{t}") for t in mix_miss]
    write_callers(work / "mix_callers.txt", callers)
    seq = _zipf_sequence(rng, mix_len, MIX_CALLERS, len(callers))
    (work / "mix_seq.txt").write_text("\n".join(map(str, seq)) + "\n")
    # Steady state: every mix tenant already has a token in Redis, as an hour into the day.
    (work / "mix_warm.txt").write_text("\n".join(str(i + 1) for i in range(MIX_TENANTS)) + "\n")

    write_callers(work / "miss_callers.txt", [(t, f"user-{t}") for t in miss])
    (work / "miss_seq.txt").write_text("\n".join(str(i + 1) for i in range(len(miss))) + "\n")

    static_script(work / "hit.lua", "bench-hit")
    static_script(work / "warm.lua", "bench-warm")
    (work / "list.lua").write_text(
        (HERE / "requests.lua").read_text() + (HERE / "done.lua").read_text()
    )
    return Workload(
        work=work,
        hit_script=work / "hit.lua",
        warm_script=work / "warm.lua",
        list_script=work / "list.lua",
        mix_callers=work / "mix_callers.txt",
        mix_seq=work / "mix_seq.txt",
        mix_seq_len=mix_len,
        mix_warm=work / "mix_warm.txt",
        miss_callers=work / "miss_callers.txt",
        miss_seq=work / "miss_seq.txt",
        miss_seq_len=len(miss),
        tenants=tenants,
    )


async def seed(dsn: str, tenants: list[str]) -> None:
    """Migrate and map one default dashboard to every tenant (one COPY)."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.copy_records_to_table(
            "tenant_dashboards",
            records=[(t, WORKSPACE, f"dash-{t}", True) for t in tenants],
            columns=("tenant_id", "workspace_id", "dashboard_id", "is_default"),
        )
    finally:
        await conn.close()
