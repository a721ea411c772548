"""CAMT.053.001.02 bank statements for tests, shaped like a bank's (ISO 20022) export."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from tonrail.money import format_minor


@dataclass(frozen=True)
class Entry:
    ref: str  # AcctSvcrRef: the bank's unique reference of the line
    amount: int
    currency: str
    direction: str  # CRDT | DBIT
    remittance: str = ""
    end_to_end: str = "NOTPROVIDED"
    status: str = "BOOK"
    debtor: str = ""  # RltdPties/Dbtr/Nm: who sent a credit
    debtor_iban: str = ""  # RltdPties/DbtrAcct/Id/IBAN


def _related_parties(e: Entry) -> str:
    if not (e.debtor or e.debtor_iban):
        return ""
    name = f"<Dbtr><Nm>{escape(e.debtor)}</Nm></Dbtr>" if e.debtor else ""
    account = f"<DbtrAcct><Id><IBAN>{e.debtor_iban}</IBAN></Id></DbtrAcct>" if e.debtor_iban else ""
    return f"            <RltdPties>{name}{account}</RltdPties>"


def statement(iban: str, entries: list[Entry], statement_id: str = "STMT-1") -> bytes:
    ntry = "".join(
        f"""
      <Ntry>
        <NtryRef>{e.ref}</NtryRef>
        <Amt Ccy="{e.currency}">{format_minor(e.amount, e.currency)}</Amt>
        <CdtDbtInd>{e.direction}</CdtDbtInd>
        <Sts>{e.status}</Sts>
        <BookgDt><Dt>2026-11-27</Dt></BookgDt>
        <ValDt><Dt>2026-11-27</Dt></ValDt>
        <AcctSvcrRef>{e.ref}</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly>
          <Cd>{"RCDT" if e.direction == "CRDT" else "ICDT"}</Cd><SubFmlyCd>ESCT</SubFmlyCd>
        </Fmly></Domn></BkTxCd>
        <NtryDtls>
          <TxDtls>
            <Refs><EndToEndId>{escape(e.end_to_end)}</EndToEndId></Refs>
            <AmtDtls><TxAmt>
              <Amt Ccy="{e.currency}">{format_minor(e.amount, e.currency)}</Amt>
            </TxAmt></AmtDtls>
{_related_parties(e)}
            <RmtInf><Ustrd>{escape(e.remittance)}</Ustrd></RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>"""
        for e in entries
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>{statement_id}</MsgId><CreDtTm>2026-11-27T18:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>{statement_id}</Id>
      <CreDtTm>2026-11-27T18:00:00</CreDtTm>
      <Acct><Id><IBAN>{iban}</IBAN></Id></Acct>{ntry}
    </Stmt>
  </BkToCstmrStmt>
</Document>
""".encode()
