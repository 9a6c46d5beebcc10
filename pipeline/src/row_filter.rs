//! Filters that the `reviews` scan applies itself. DataFusion offers each conjunct of a WHERE clause to the table
//! (`supports_filters_pushdown`); those of the form `<integer column> <comparison> <constant>`, the column maybe
//! widened or in `coalesce(<column>, <constant>)`, are taken as exact, and the scan drops the rows they reject
//! before building them into batches. Only the parsed numbers are looked at, so a rejected row's text is never
//! copied: `prepare` drops two thirds of the benchmark dump's rows (not helpful) this way, which took it from 2.5
//! to 2.1 core-seconds (README). Rejected rows are still counted ([`crate::quarantine::RowCounts::skipped`]), so
//! that a job can account for every row it read.

use std::fmt;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Case, Cast, Expr, Operator};
use serde::{Deserialize, Serialize};

use crate::batch::{HELPFUL_VOTES, Review, STAR_RATING, TOTAL_VOTES};
use crate::dump::COLUMNS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl Comparison {
    fn of(op: Operator) -> Option<Self> {
        Some(match op {
            Operator::Eq => Comparison::Eq,
            Operator::NotEq => Comparison::NotEq,
            Operator::Lt => Comparison::Lt,
            Operator::LtEq => Comparison::LtEq,
            Operator::Gt => Comparison::Gt,
            Operator::GtEq => Comparison::GtEq,
            _ => return None,
        })
    }

    /// The comparison with its operands swapped: `1 <= x` is `x >= 1`.
    fn swapped(self) -> Self {
        match self {
            Comparison::Lt => Comparison::Gt,
            Comparison::LtEq => Comparison::GtEq,
            Comparison::Gt => Comparison::Lt,
            Comparison::GtEq => Comparison::LtEq,
            same => same,
        }
    }

    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Comparison::Eq => a == b,
            Comparison::NotEq => a != b,
            Comparison::Lt => a < b,
            Comparison::LtEq => a <= b,
            Comparison::Gt => a > b,
            Comparison::GtEq => a >= b,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::NotEq => "!=",
            Comparison::Lt => "<",
            Comparison::LtEq => "<=",
            Comparison::Gt => ">",
            Comparison::GtEq => ">=",
        }
    }
}

/// `column <comparison> value`, over one of the integer columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFilter {
    /// Canonical index: star_rating, helpful_votes or total_votes.
    column: usize,
    /// `coalesce(column, if_null)`: what a NULL stands for. Without it a NULL is rejected, as in SQL.
    if_null: Option<i64>,
    comparison: Comparison,
    value: i64,
}

impl RowFilter {
    /// The filter that `expr` is, if the scan can apply it exactly.
    pub fn from_expr(expr: &Expr) -> Option<Self> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else { return None };
        let comparison = Comparison::of(*op)?;
        if let (Some((column, if_null)), Some(value)) = (operand(left), constant(right)) {
            return Some(RowFilter { column, if_null, comparison, value });
        }
        let (Some(value), Some((column, if_null))) = (constant(left), operand(right)) else { return None };
        Some(RowFilter { column, if_null, comparison: comparison.swapped(), value })
    }

    /// Whether a valid row with these numbers passes.
    pub fn keeps(&self, star_rating: i32, helpful_votes: Option<i32>, total_votes: Option<i32>) -> bool {
        let value = match self.column {
            STAR_RATING => Some(star_rating),
            HELPFUL_VOTES => helpful_votes,
            _ => total_votes,
        };
        match value.map(i64::from).or(self.if_null) {
            Some(v) => self.comparison.holds(v, self.value),
            None => false,
        }
    }

    pub fn keeps_review(&self, review: &Review<'_>) -> bool {
        self.keeps(review.star_rating, review.helpful_votes, review.total_votes)
    }
}

impl fmt::Display for RowFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (column, op, value) = (COLUMNS[self.column], self.comparison.symbol(), self.value);
        match self.if_null {
            Some(default) => write!(f, "coalesce({column}, {default}) {op} {value}"),
            None => write!(f, "{column} {op} {value}"),
        }
    }
}

/// An integer column, maybe as `coalesce(column, constant)`: its canonical index and the constant.
fn operand(expr: &Expr) -> Option<(usize, Option<i64>)> {
    match expr {
        Expr::ScalarFunction(call) if call.func.name() == "coalesce" => match call.args.as_slice() {
            [column, default] => Some((integer_column(column)?, Some(constant(default)?))),
            _ => None,
        },
        // What DataFusion's simplifier makes of coalesce: CASE WHEN column IS NOT NULL THEN column ELSE constant END.
        Expr::Case(Case { expr: None, when_then_expr, else_expr: Some(default) }) => match when_then_expr.as_slice() {
            [(when, then)] => {
                let column = integer_column(then)?;
                let Expr::IsNotNull(tested) = when.as_ref() else { return None };
                (integer_column(tested)? == column).then_some(())?;
                Some((column, Some(constant(default)?)))
            }
            _ => None,
        },
        _ => Some((integer_column(expr)?, None)),
    }
}

fn integer_column(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Column(column) => {
            [STAR_RATING, HELPFUL_VOTES, TOTAL_VOTES].into_iter().find(|&i| COLUMNS[i] == column.name)
        }
        // The columns are Int32: widened to Int64 (as type coercion does for an Int64 constant), they compare the
        // same.
        Expr::Cast(Cast { expr, field }) if matches!(field.data_type(), DataType::Int32 | DataType::Int64) => {
            integer_column(expr)
        }
        _ => None,
    }
}

fn constant(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else { return None };
    match *value {
        ScalarValue::Int8(Some(v)) => Some(v.into()),
        ScalarValue::Int16(Some(v)) => Some(v.into()),
        ScalarValue::Int32(Some(v)) => Some(v.into()),
        ScalarValue::Int64(Some(v)) => Some(v),
        ScalarValue::UInt8(Some(v)) => Some(v.into()),
        ScalarValue::UInt16(Some(v)) => Some(v.into()),
        ScalarValue::UInt32(Some(v)) => Some(v.into()),
        ScalarValue::UInt64(Some(v)) => i64::try_from(v).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::functions::core::expr_fn::coalesce;
    use datafusion::logical_expr::{cast, col, lit, when};

    use super::*;

    fn filter(expr: Expr) -> Option<String> {
        RowFilter::from_expr(&expr).map(|f| f.to_string())
    }

    #[test]
    fn takes_integer_columns_against_constants() {
        assert_eq!(filter(col("helpful_votes").gt_eq(lit(1))).as_deref(), Some("helpful_votes >= 1"));
        assert_eq!(filter(lit(2i64).lt_eq(col("star_rating"))).as_deref(), Some("star_rating >= 2"));
        assert_eq!(filter(lit(2u8).gt(col("total_votes"))).as_deref(), Some("total_votes < 2"));
        assert_eq!(
            filter(coalesce(vec![col("helpful_votes"), lit(0)]).gt_eq(lit(1))).as_deref(),
            Some("coalesce(helpful_votes, 0) >= 1")
        );
        let simplified = when(col("helpful_votes").is_not_null(), col("helpful_votes")).otherwise(lit(0)).unwrap();
        assert_eq!(filter(simplified.gt_eq(lit(1))).as_deref(), Some("coalesce(helpful_votes, 0) >= 1"));
        assert_eq!(
            filter(cast(col("helpful_votes"), DataType::Int64).not_eq(lit(3i64))).as_deref(),
            Some("helpful_votes != 3")
        );
    }

    #[test]
    fn leaves_everything_else_to_datafusion() {
        assert_eq!(filter(col("review_body").eq(lit("x"))), None);
        assert_eq!(filter((col("helpful_votes") + lit(1)).gt(lit(2))), None);
        assert_eq!(filter(col("helpful_votes").gt_eq(lit(1.5))), None);
        assert_eq!(filter(col("helpful_votes").gt_eq(col("total_votes"))), None);
        assert_eq!(filter(col("helpful_votes").gt_eq(lit(ScalarValue::Int32(None)))), None);
        assert_eq!(filter(cast(col("helpful_votes"), DataType::Int8).gt(lit(1))), None);
        assert_eq!(filter(coalesce(vec![col("helpful_votes"), col("total_votes")]).gt(lit(1))), None);
        assert_eq!(filter(col("helpful_votes").gt_eq(lit(1)).and(col("star_rating").eq(lit(5)))), None);
        let other = when(col("total_votes").is_not_null(), col("helpful_votes")).otherwise(lit(0)).unwrap();
        assert_eq!(filter(other.gt_eq(lit(1))), None);
    }

    #[test]
    fn nulls_fail_unless_coalesced() {
        let plain = RowFilter::from_expr(&col("helpful_votes").gt_eq(lit(0))).unwrap();
        assert!(plain.keeps(3, Some(0), None));
        assert!(!plain.keeps(3, None, Some(1)));
        let coalesced = RowFilter::from_expr(&coalesce(vec![col("helpful_votes"), lit(0)]).gt_eq(lit(1))).unwrap();
        assert!(!coalesced.keeps(3, None, None));
        assert!(coalesced.keeps(3, Some(1), None));
        let rating = RowFilter::from_expr(&col("star_rating").not_eq(lit(3))).unwrap();
        assert!(rating.keeps(5, None, None) && !rating.keeps(3, Some(9), Some(9)));
    }
}
