//! The SQL functions that `sql/prepare.sql` uses, registered on the job's session:
//! - `review_key(review_id, seed)`: a stable 64-bit hash of the review id, which decides the split, the shard and
//!   the order of records (see [`review_key`]);
//! - `review_text(text)` and `one_line(text)`: the text of a record field ([`super::text`]);
//! - `review_record(keep, part, …)` and `raw_record(keep, part, …)`: a whole training record, built in one pass
//!   (see [`RecordUdf`]); `--template` compiles to one of them.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, StringBuilder, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

use super::text;

/// Registers the functions on a session.
pub fn register(ctx: &SessionContext) {
    for f in all() {
        ctx.register_udf(f);
    }
}

/// Every function of ours (executors look them up by name: `cluster::codec`).
pub fn all() -> Vec<ScalarUDF> {
    vec![
        key_udf(),
        text_udf("review_text", text::clean),
        text_udf("one_line", text::one_line),
        ScalarUDF::new_from_impl(RecordUdf::new("review_record", Clean::ReviewText)),
        ScalarUDF::new_from_impl(RecordUdf::new("raw_record", Clean::OneLine)),
    ]
}

/// A stable hash of a review id: FNV-1a over its bytes, then mixed with the seed by SplitMix64's finaliser so
/// that every bit depends on every input bit. It is a pure function of (id, seed), the same on every machine, in
/// every run and in every partitioning, which is what makes the split and the shards reproducible.
pub fn review_key(review_id: &str, seed: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in review_id.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(hash ^ splitmix64(seed))
}

pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key_udf() -> ScalarUDF {
    create_udf(
        "review_key",
        vec![DataType::Utf8, DataType::Int64],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (ids, seeds) = (arrays[0].as_string::<i32>(), arrays[1].as_primitive::<Int64Type>());
            let keys: UInt64Array = (0..ids.len())
                .map(|i| {
                    let id = if ids.is_valid(i) { ids.value(i) } else { "" };
                    // The seed is a bit pattern: negative seeds are as good as positive ones.
                    Some(review_key(id, seeds.value(i) as u64))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(keys) as ArrayRef))
        }),
    )
}

fn text_udf(name: &str, f: fn(&str) -> Cow<'_, str>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let input = arrays[0].as_string::<i32>();
            // Most batches need no change at all: pass them on without copying a byte.
            let first_change = input.iter().position(|v| v.is_some_and(|v| matches!(f(v), Cow::Owned(_))));
            let Some(first_change) = first_change else {
                return Ok(ColumnarValue::Array(Arc::clone(&arrays[0])));
            };
            let mut out = StringBuilder::with_capacity(input.len(), input.value_data().len() + 64);
            for (i, value) in input.iter().enumerate() {
                // Rows before the first change are known to be unchanged.
                out.append_option(value.map(|v| if i < first_change { Cow::Borrowed(v) } else { f(v) }));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// How a record function writes its column parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Clean {
    /// [`text::clean`]: line breaks escaped and entities decoded (the default).
    ReviewText,
    /// [`text::one_line`]: only line breaks escaped (`--raw-html`).
    OneLine,
}

/// `review_record(keep, part, …)`: for each row where `keep` is true, its parts joined into one string; NULL
/// where `keep` is false or NULL. Literal parts are written as given; every other part is written as text
/// (numbers in decimal, NULL as nothing), cleaned as [`text::clean`] does (`raw_record`: [`text::one_line`]).
///
/// It does in one pass what `CASE WHEN keep THEN concat('…', review_text(col), …) END` does in five: that CASE
/// copies the kept rows' fields out of the batch and its result back in, and each `review_text` and the `concat`
/// copy the text once more. Over a dump that is most of the job's copying.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RecordUdf {
    name: &'static str,
    clean: Clean,
    signature: Signature,
}

impl RecordUdf {
    fn new(name: &'static str, clean: Clean) -> Self {
        RecordUdf { name, clean, signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

/// One part of a record, ready to write.
enum Part {
    Literal(String),
    Column(StringArray),
}

impl ScalarUDFImpl for RecordUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types.first() {
            Some(DataType::Boolean | DataType::Null) if arg_types.len() > 1 => Ok(DataType::Utf8),
            _ => plan_err!("{}(keep, part, …) takes a boolean and at least one part", self.name),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let mut args = args.args.into_iter();
        let keep = match args.next() {
            Some(ColumnarValue::Array(keep)) => keep.as_boolean().clone(),
            Some(ColumnarValue::Scalar(keep)) => match keep {
                ScalarValue::Boolean(keep) => BooleanArray::from(vec![keep; rows]),
                _ => BooleanArray::from(vec![None; rows]),
            },
            None => return exec_err!("{} without arguments", self.name),
        };
        let parts = args
            .map(|part| {
                Ok(match part {
                    ColumnarValue::Scalar(value) => {
                        let text = cast(&value.to_array_of_size(1)?, &DataType::Utf8)?;
                        let text = text.as_string::<i32>();
                        Part::Literal(if text.is_valid(0) { text.value(0).to_owned() } else { String::new() })
                    }
                    ColumnarValue::Array(column) => Part::Column(cast(&column, &DataType::Utf8)?.as_string().clone()),
                })
            })
            .collect::<DfResult<Vec<_>>>()?;

        // Room for the kept rows' parts as they are: cleaning seldom makes text longer.
        let kept = |i: usize| keep.is_valid(i) && keep.value(i);
        let bytes: usize = (0..rows)
            .filter(|&i| kept(i))
            .map(|i| {
                let part_len = |part: &Part| match part {
                    Part::Literal(text) => text.len(),
                    Part::Column(column) => column.value_length(i) as usize,
                };
                parts.iter().map(part_len).sum::<usize>()
            })
            .sum();
        let mut out = StringBuilder::with_capacity(rows, bytes);
        for i in 0..rows {
            if !kept(i) {
                out.append_null();
                continue;
            }
            for part in &parts {
                let written = match part {
                    Part::Literal(text) => out.write_str(text),
                    Part::Column(column) if column.is_null(i) => Ok(()),
                    Part::Column(column) => match self.clean {
                        Clean::ReviewText => text::clean_into(column.value(i), &mut out),
                        Clean::OneLine => text::one_line_into(column.value(i), &mut out),
                    },
                };
                written.expect("writing to a StringBuilder cannot fail");
            }
            // The parts written above are the value; this ends it.
            out.append_value("");
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_seeded() {
        // Fixed values: a change here changes every user's split and shards.
        assert_eq!(review_key("R1ABCDEFGHIJK", 0), review_key("R1ABCDEFGHIJK", 0));
        assert_ne!(review_key("R1ABCDEFGHIJK", 0), review_key("R1ABCDEFGHIJK", 1));
        assert_ne!(review_key("R1ABCDEFGHIJK", 0), review_key("R1ABCDEFGHIJL", 0));
        assert_eq!(review_key("", 0), 6_566_800_829_925_814_604);
        assert_eq!(review_key("R1ABCDEFGHIJK", 42), review_key("R1ABCDEFGHIJK", 42));
    }

    #[test]
    fn keys_spread_evenly() {
        // 10,000 ids into 10 buckets by the top bits: each within 15% of 1,000.
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let key = review_key(&format!("R{i:012}"), 7);
            buckets[((u128::from(key) * 10) >> 64) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (850..1150).contains(&n)), "{buckets:?}");
    }
}
