"""Bodies of the energy API: per-item results of a batch of readings, a resident's energy."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from cityshare.energy.handlers import IngestOutcome
from cityshare.energy.model import IntervalSums, Verdict
from cityshare.energy.queries import EnergySummary, ReviewItem


class ReadingResultOut(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    result: str = Field(
        description="`accepted` (stored; credited as soon as its interval can be judged), "
        "`duplicate` (already stored: nothing changed), `anomaly:<kind>` (stored, credits "
        "nothing: future_timestamp, before_registration, seq_ts_order, register_backwards, "
        "meter_reset, impossible_power) or `rejected:<reason>` (not stored: malformed, "
        "too_large, unsupported_alg, invalid_claims, unknown_device, wrong_kind, "
        "bad_signature, revoked_key, seq_reused)."
    )
    device: str | None = Field(None, description="The device, when the item is authentic.")


class ReadingsOut(BaseModel):
    """What became of a batch: one count per kind of result (they add up to the items), then
    each item's result. An anomaly is stored but credits nothing, so it is counted apart from
    `accepted`: a client that counted it as accepted would believe it was credited."""

    accepted: int = Field(description="Items stored as new readings, to be credited.")
    anomalies: int = Field(description="Items stored as anomalies (`anomaly:<kind>`): no credit.")
    duplicates: int = Field(description="Items already stored: nothing changed.")
    rejected: int = Field(description="Items refused (`rejected:<reason>`): not stored.")
    results: list[ReadingResultOut]

    @classmethod
    def of(cls, outcome: IngestOutcome) -> ReadingsOut:
        verdicts = [r.verdict for r in outcome.results]
        return cls(
            accepted=verdicts.count(Verdict.ACCEPTED),
            anomalies=verdicts.count(Verdict.ANOMALY),
            duplicates=verdicts.count(Verdict.DUPLICATE),
            rejected=verdicts.count(Verdict.REJECTED),
            results=[ReadingResultOut(index=r.index, result=r.result, device=r.device)
                     for r in outcome.results],
        )  # fmt: skip


class CreditsOut(BaseModel):
    exported_wh: int
    imported_wh: int
    carbon_g: int = Field(description="Grams CO2e credited to the CARBON wallet.")
    credit_milli: int = Field(description="Smart credit milli-points credited (1000 = 1 point).")

    @classmethod
    def of(cls, sums: IntervalSums) -> CreditsOut:
        return cls(
            exported_wh=sums.export_wh,
            imported_wh=sums.import_wh,
            carbon_g=sums.carbon_g,
            credit_milli=sums.credit_milli,
        )


class DayOut(CreditsOut):
    date: dt.date = Field(description="Local date (the tariff's timezone) the intervals began.")


class MeterOut(BaseModel):
    device: str
    kind: str
    label: str | None = None
    seq: int | None = Field(
        None,
        description="The latest reading credited up to (the top of the meter's chain); null "
        "until its first usable reading. Readings beyond a gap are in `waiting_seqs`.",
    )
    ts: int | None = Field(None, description="Its timestamp (unix seconds).")
    import_wh: int | None = Field(None, description="Its cumulative import register.")
    export_wh: int | None = Field(None, description="Its cumulative export register.")
    waiting: int = Field(
        0,
        description="Readings stored but not yet credited: they wait for a missing sequence "
        "number, and join once it arrives or the gap horizon passes.",
    )
    waiting_seqs: list[int] = Field(
        default_factory=list, description="The lowest 20 of their sequence numbers, ascending."
    )


class ReviewOut(BaseModel):
    """An anomalous interval whose energy no later reading has covered: not credited nor
    billed until a reading covers it or it is reviewed."""

    interval: int = Field(description="The interval's id (page with `after`).")
    device: str
    seq: int = Field(description="The reading that joined the chain with this interval.")
    prev_seq: int = Field(description="The other end of the interval.")
    status: str = Field(description="The anomaly (e.g. impossible_power, meter_reset).")
    start_ts: int
    end_ts: int

    @classmethod
    def of(cls, item: ReviewItem) -> ReviewOut:
        return cls(
            interval=item.interval_id, device=item.device_id, seq=item.seq,
            prev_seq=item.prev_seq, status=item.status, start_ts=item.start_ts,
            end_ts=item.end_ts,
        )  # fmt: skip


class EnergyOut(BaseModel):
    timezone: str
    devices: list[MeterOut]
    totals: CreditsOut = Field(description="Everything credited to you, ever.")
    days: list[DayOut] = Field(description="What was credited per local day, oldest first.")
    awaiting_review: list[ReviewOut] = Field(
        default_factory=list,
        description="Anomalous intervals whose energy is neither credited nor billed yet "
        "(the oldest 100): a later reading may still cover them, else they are reviewed.",
    )

    @classmethod
    def of(cls, summary: EnergySummary) -> EnergyOut:
        return cls(
            timezone=summary.timezone,
            devices=[
                MeterOut(
                    device=d.device_id,
                    kind=d.kind,
                    label=d.label,
                    seq=d.seq,
                    ts=d.ts,
                    import_wh=d.import_wh,
                    export_wh=d.export_wh,
                    waiting=d.waiting,
                    waiting_seqs=list(d.waiting_seqs),
                )
                for d in summary.devices
            ],
            totals=CreditsOut.of(summary.totals),
            days=[DayOut(date=d.date, **CreditsOut.of(d.sums).model_dump()) for d in summary.days],
            awaiting_review=[ReviewOut.of(r) for r in summary.review],
        )
