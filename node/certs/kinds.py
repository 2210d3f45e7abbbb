"""Certificate types: what each kind of certificate says, in which words, for how long.

Which types a node may issue is its catalog's business (`certificate_types` of its items);
this module only knows how a type reads: its title, the fields beyond the applicant's name and
ID number, and how long it stays valid by default. A type the catalog lists but this module does
not know still works: it gets a plain title and takes whatever fields the clerk gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldSpec:
    key: str
    label: str
    required: bool = True
    default: str = ""
    example: str = ""  # a realistic value, for previews, the demo and the QR length benchmark


@dataclass(frozen=True)
class CertificateType:
    code: str
    title: str
    fields: tuple[FieldSpec, ...] = field(default=())
    valid_days: int = 90
    known: bool = True

    def field(self, key: str) -> FieldSpec | None:
        for spec in (*PERSONAL, *self.fields):
            if spec.key == key:
                return spec
        return None


# Every certificate names its holder; these two come from the request, not from the clerk.
PERSONAL = (
    FieldSpec("applicant_name", "姓名", example="陈添荣"),
    FieldSpec("applicant_id", "公民身份号码", example="34152219800101123X"),
)

_TYPES = (
    CertificateType(
        "pension-balance-proof",
        "城乡居民养老保险个人账户余额证明",
        (
            FieldSpec("account_balance", "个人账户余额（元）", example="38216.45"),
            FieldSpec("as_of", "截至日期", example="2026-11-20"),
        ),
    ),
    CertificateType(
        "social-insurance-proof",
        "社会保险参保缴费证明",
        (
            FieldSpec("insured_since", "参保起始年月", example="2003-07"),
            FieldSpec("months_paid", "累计缴费月数", example="268"),
        ),
    ),
    CertificateType(
        "medical-insurance-transfer-proof",
        "基本医疗保险参保凭证",
        (
            FieldSpec("insured_since", "参保起始年月", example="2003-07"),
            FieldSpec("months_paid", "累计缴费月数", example="268"),
        ),
    ),
    CertificateType(
        "household-registration-proof",
        "户籍证明",
        (FieldSpec("address", "户籍地址", example="安徽省六安市霍邱县城关镇东湖路18号"),),
    ),
    CertificateType(
        "no-criminal-record-proof",
        "无犯罪记录证明",
        (FieldSpec("result", "查询结果", default="未发现有犯罪记录", example="未发现有犯罪记录"),),
    ),
    CertificateType(
        "business-license",
        "营业执照登记信息证明",
        (
            FieldSpec("uscc", "统一社会信用代码", example="91341522MA2N8XYZ3K"),
            FieldSpec("enterprise_name", "企业名称", example="霍邱县添荣农业专业合作社"),
        ),
    ),
    CertificateType(
        "retirement-approval",
        "退休审批证明",
        (
            FieldSpec("retirement_date", "退休日期", example="2025-03-01"),
            FieldSpec("approval_no", "审批文号", example="六人社退〔2025〕0312号"),
        ),
    ),
)
TYPES = {t.code: t for t in _TYPES}


def certificate_type(code: str) -> CertificateType:
    """The type's definition, or a plain one for a type this module does not know."""
    known = TYPES.get(code)
    if known is not None:
        return known
    return CertificateType(code, f"证明（{code}）", (), 90, known=False)


def example_fields(ctype: CertificateType) -> dict[str, str]:
    """A realistic certificate of this type (the demo and the QR length benchmark use it)."""
    return {spec.key: spec.example for spec in (*PERSONAL, *ctype.fields)}


def label(key: str, type_code: str) -> str:
    spec = certificate_type(type_code).field(key)
    return spec.label if spec else key
