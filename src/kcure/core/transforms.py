"""Pure Spark transforms of pseudonymization and generalization: Column in, Column out.

No Python UDFs: HMAC-SHA256 is composed from ``sha2``, ``unhex`` and ``concat`` (RFC 2104:
``H((K ^ opad) || H((K ^ ipad) || m))``), with the padded keys supplied as *columns* of a one-row
broadcast relation rather than literals, so the key material never appears in a query plan, the
Spark UI's SQL tab or the event log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kcure.core.rrn import WEIGHTS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from kcure.core.keys import Key


def key_relation(spark: SparkSession, keys: dict[str, Key]) -> DataFrame:
    """One row holding each key's inner and outer pads as binary columns ``<name>_ipad``/``_opad``.

    Made through Arrow (:func:`kcure.core.spark.local_frame`), so the pads stay in the JVM. Made from a
    Python list (``createDataFrame``), the row was pickled into a Python RDD: every stage that joined
    the keys in started Spark's Python daemon and workers to unpickle it (3 processes and 6.8 CPU s in
    a 500-patient build), and each of those processes held the key material."""
    from kcure.core.spark import local_frame

    fields, values = [], []
    for name, secret in keys.items():
        ipad, opad = secret.pads()
        fields += [f"{name}_ipad binary", f"{name}_opad binary"]
        values += [bytes(ipad), bytes(opad)]
    return local_frame(spark, [tuple(values)], ", ".join(fields))


def with_keys(df: DataFrame, keys: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return df.crossJoin(F.broadcast(keys))


def drop_keys(df: DataFrame, keys: DataFrame) -> DataFrame:
    return df.drop(*keys.columns)


def hmac_sha256(message: Column, key: str) -> Column:
    """Hex HMAC-SHA256 of a string column under the key whose pads ``with_keys`` joined in."""
    from pyspark.sql import functions as F

    inner = F.unhex(F.sha2(F.concat(F.col(f"{key}_ipad"), message.cast("binary")), 256))
    return F.sha2(F.concat(F.col(f"{key}_opad"), inner), 256)


def nonblank(text: Column) -> Column:
    """The text, or null when it is empty."""
    from pyspark.sql import functions as F

    return F.when(F.length(text) > 0, text)


def rrn_digits(rrn: Column) -> Column:
    """The RRN's digits only ('' when it has none)."""
    from pyspark.sql import functions as F

    return F.regexp_replace(rrn, r"[^0-9]", "")


def rrn_digits_only(rrn: Column) -> Column:
    return nonblank(rrn_digits(rrn))


def rrn_valid(rrn: Column) -> Column:
    """13 digits whose check digit holds (null RRN: false)."""
    from pyspark.sql import functions as F

    shape = rrn.rlike(r"^[0-9]{13}$")
    d = [F.substring(rrn, i + 1, 1).cast("int") for i in range(13)]
    total = sum((d[i] * w for i, w in enumerate(WEIGHTS)), F.lit(0))
    check = (F.lit(11) - total % 11) % 10
    return F.coalesce(F.when(shape, check == d[12]), F.lit(False))


def rrn_birth(rrn: Column) -> Column:
    """Birth date from the first seven digits (the century from the 7th), or null."""
    from pyspark.sql import functions as F

    g = F.substring(rrn, 7, 1)
    century = (
        F.when(g.isin("1", "2", "5", "6"), F.lit("19"))
        .when(g.isin("3", "4", "7", "8"), F.lit("20"))
        .when(g.isin("9", "0"), F.lit("18"))
    )
    text = F.concat(century, F.substring(rrn, 1, 6))
    return F.when(rrn.rlike(r"^[0-9]{7}"), F.try_to_date(text, "yyyyMMdd"))


def rrn_sex(rrn: Column) -> Column:
    from pyspark.sql import functions as F

    g = F.substring(rrn, 7, 1)
    return F.when(g.isin("1", "3", "5", "7", "9"), F.lit("1")).when(g.isin("2", "4", "6", "8", "0"), F.lit("2"))


def squeezed_name(name: Column) -> Column:
    """The name upper-cased without whitespace ('' when nothing is left)."""
    from pyspark.sql import functions as F

    return F.upper(F.regexp_replace(name, r"\s+", ""))


def normalized_name(name: Column) -> Column:
    return nonblank(squeezed_name(name))


def secondary_message(name: Column, birth: Column, sex: Column, *, normalized: bool = False) -> Column:
    """``SK|name|yyyymmdd|sex``; null unless all three are known (``normalized``: name already is)."""
    from pyspark.sql import functions as F

    n = name if normalized else normalized_name(name)
    return F.when(
        n.isNotNull() & birth.isNotNull() & sex.isNotNull(),
        F.concat_ws("|", F.lit("SK"), n, F.date_format(birth, "yyyyMMdd"), sex),
    )


def age_band(birth: Column, at: Column, width: int = 5, top: int = 85) -> Column:
    """Age in whole years at ``at`` as a band label: '00-04', ..., '80-84', '85+'."""
    from pyspark.sql import functions as F

    age = F.floor(F.months_between(at, birth) / 12).cast("int")
    lo = (F.floor(age / width) * width).cast("int")
    label = F.concat(F.lpad(lo.cast("string"), 2, "0"), F.lit("-"), F.lpad((lo + width - 1).cast("string"), 2, "0"))
    return F.when(age.isNull() | (age < 0), F.lit(None)).when(age >= top, F.lit(f"{top}+")).otherwise(label)


def kcd_generalized(code: Column, chars: int = 4, mental_chars: int = 3) -> Column:
    """KCD codes cut to ``chars`` characters, mental disorders (F00-F99) to ``mental_chars``."""
    from pyspark.sql import functions as F

    return F.when(code.startswith("F"), F.substring(code, 1, mental_chars)).otherwise(F.substring(code, 1, chars))


def residence_class(sido: Column, classes: Mapping[str, Sequence[str] | None]) -> Column:
    """The 2-digit SIDO code as one of the configured classes (a class given as None takes the rest)."""
    from pyspark.sql import functions as F

    expr = None
    rest = None
    for label, codes in classes.items():
        if codes is None:
            rest = label
            continue
        cond = sido.isin(*codes)
        expr = F.when(cond, F.lit(label)) if expr is None else expr.when(cond, F.lit(label))
    if expr is None:
        return F.lit(rest)
    return expr.otherwise(F.when(sido.isNotNull(), F.lit(rest)))


def treatment_code(div_ty_cd: Column, div_cd: Column, device_chars: int = 5) -> Column:
    """DIV_CD: drug price codes (type 3) -> NULL, device codes (type 8) -> first chars, procedures kept."""
    from pyspark.sql import functions as F

    return (
        F.when(div_ty_cd == "3", F.lit(None).cast("string"))
        .when(div_ty_cd == "8", F.substring(div_cd, 1, device_chars))
        .otherwise(div_cd)
    )


def substitute_key(value: Column, key: str, label: str, chars: int = 20) -> Column:
    """A keyed substitute for a source key (MID, YKIHO, PRSCP_GRANT_NO): same input, same output."""
    from pyspark.sql import functions as F

    return F.when(value.isNotNull(), F.substring(hmac_sha256(F.concat(F.lit(f"{label}|"), value), key), 1, chars))


def flag_duplicates(df: DataFrame, columns: list[str], cluster: str | None = None) -> DataFrame:
    """``_dup`` is true for every exact copy of an earlier row (same columns, later in the delivery).

    Copies share every column, so it is enough to bring together the rows of one ``cluster`` column
    (for claims, the statement's MID) and sort them by all columns: the shuffle is keyed on that one
    column and the output leaves sorted by it, so its runs stay compressible downstream.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if cluster is not None:
        df = df.repartition(cluster)
        columns = [cluster, *(c for c in columns if c != cluster)]
    w = Window.partitionBy(*columns).orderBy("_year", "_file", "_line")
    return df.withColumn("_dup", F.row_number().over(w) > 1)
