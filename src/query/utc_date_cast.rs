//! `CAST(<UTC timestamp> AS DATE)` by arithmetic.
//!
//! Arrow's cast of a timestamp that carries a time zone to a date converts value by value
//! through chrono-tz (an offset lookup per row), even when the zone is UTC, where the date is
//! the days since the epoch rounded down. Every timestamp cclake writes is UTC, and the
//! Genesys views group by `CAST(emit_date AS DATE)`: that per-row path was a seventh of
//! `agent_daily_metrics`' CPU (benches/README.md, "Issue 28, third round"). The optimizer
//! rule [`UtcDateCasts`] plans such a cast as [`UtcDate`] (output names kept); a cast from
//! any other zone stays Arrow's.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Date32Array};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::utc_date_trunc::is_utc;

/// The name [`UtcDate`] is planned under (in `EXPLAIN`; a cast's output keeps its name).
pub const NAME: &str = "cclake_utc_date";

/// The date (days since 1970-01-01, rounded down) of a UTC timestamp of any unit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UtcDate {
    signature: Signature,
}

impl UtcDate {
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Self { signature: Signature::any(1, Volatility::Immutable) }))
    }
}

fn units_per_day(unit: &TimeUnit) -> i64 {
    86_400
        * match unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        }
}

/// The day of `value` (in `per_day` units a day), or an error past Date32's range.
fn day(value: i64, per_day: i64) -> Result<i32> {
    match i32::try_from(value.div_euclid(per_day)) {
        Ok(day) => Ok(day),
        Err(_) => exec_err!("{NAME}: timestamp {value} is past the range of a date"),
    }
}

fn days(array: &ArrayRef, unit: &TimeUnit) -> Result<Date32Array> {
    let per_day = units_per_day(unit);
    let convert = |v: i64| day(v, per_day).map_err(|e| arrow::error::ArrowError::ComputeError(e.to_string()));
    Ok(match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().try_unary(convert)?,
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().try_unary(convert)?,
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().try_unary(convert)?,
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().try_unary(convert)?,
    })
}

impl ScalarUDFImpl for UtcDate {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else { return exec_err!("{NAME} takes one timestamp") };
        let DataType::Timestamp(unit, _) = value.data_type() else {
            return exec_err!("{NAME} takes a timestamp, not {}", value.data_type());
        };
        match value {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(Arc::new(days(array, &unit)?))),
            ColumnarValue::Scalar(scalar) => {
                let day = match scalar {
                    ScalarValue::TimestampSecond(v, _)
                    | ScalarValue::TimestampMillisecond(v, _)
                    | ScalarValue::TimestampMicrosecond(v, _)
                    | ScalarValue::TimestampNanosecond(v, _) => v.map(|v| day(v, units_per_day(&unit))).transpose()?,
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Date32(day)))
            }
        }
    }
}

/// Plans `CAST(x AS DATE)` of a UTC timestamp `x` as [`UtcDate`], keeping the expression's
/// output name.
#[derive(Debug, Default)]
pub struct UtcDateCasts;

impl OptimizerRule for UtcDateCasts {
    fn name(&self) -> &str {
        "cclake_utc_date_casts"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if plan.inputs().is_empty() {
            return Ok(Transformed::no(plan));
        }
        let schema = merge_schema(&plan.inputs());
        let names = NamePreserver::new(&plan);
        let function = UtcDate::udf();
        plan.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| {
                let utc_to_date = match &e {
                    Expr::Cast(Cast { expr, field }) if field.data_type() == &DataType::Date32 => {
                        matches!(expr.get_type(&schema), Ok(DataType::Timestamp(_, Some(zone))) if is_utc(&zone))
                    }
                    _ => false,
                };
                match e {
                    Expr::Cast(Cast { expr, .. }) if utc_to_date => Ok(Transformed::yes(function.call(vec![*expr]))),
                    other => Ok(Transformed::no(other)),
                }
            })?;
            Ok(Transformed::new_transformed(name.restore(rewritten.data), rewritten.transformed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, TimestampMicrosecondArray, TimestampNanosecondArray};
    use datafusion::prelude::SessionContext;

    #[test]
    fn days_of_utc_timestamps_are_arrows_cast_and_hand_worked_values() {
        // By hand: 1970-01-01 is day 0, 1969-12-31T23:59:59.999999 day -1, 2024-03-06 day 19,788.
        let hand = TimestampMicrosecondArray::from(vec![Some(0), Some(-1), None, Some(19_788 * 86_400_000_000 + 37_000_000)]).with_timezone("UTC");
        let got = days(&(Arc::new(hand) as ArrayRef), &TimeUnit::Microsecond).unwrap();
        assert_eq!(got, Date32Array::from(vec![Some(0), Some(-1), None, Some(19_788)]));

        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let values: Vec<Option<i64>> = (0..3000)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (i % 11 != 0).then(|| (seed % 6_000_000_000_000_000) as i64 - 2_000_000_000_000_000)
            })
            .collect();
        let arrays: Vec<(ArrayRef, TimeUnit)> = vec![
            (Arc::new(TimestampMicrosecondArray::from(values.clone()).with_timezone("UTC")), TimeUnit::Microsecond),
            (Arc::new(TimestampNanosecondArray::from(values.iter().map(|v| v.map(|v| v / 3)).collect::<Vec<_>>()).with_timezone("+00:00")), TimeUnit::Nanosecond),
        ];
        for (array, unit) in arrays {
            let expected = arrow::compute::cast(&array, &DataType::Date32).unwrap();
            assert_eq!(&days(&array, &unit).unwrap() as &dyn Array, expected.as_ref(), "{unit:?}");
        }
    }

    #[test]
    fn a_timestamp_past_a_dates_range_is_an_error_that_names_it() {
        // i64::MAX seconds is about 1.07e14 days, past Date32's 2^31.
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Scalar(ScalarValue::TimestampSecond(Some(i64::MAX), Some("UTC".into())))],
            arg_fields: vec![Arc::new(arrow::datatypes::Field::new("t", DataType::Timestamp(TimeUnit::Second, Some("UTC".into())), true))],
            number_rows: 1,
            return_field: Arc::new(arrow::datatypes::Field::new(NAME, DataType::Date32, true)),
            config_options: Arc::new(datafusion::config::ConfigOptions::default()),
        };
        let error = UtcDate::udf().invoke_with_args(args).unwrap_err().to_string();
        assert!(error.contains(&format!("timestamp {} is past the range of a date", i64::MAX)), "{error}");
        let array: ArrayRef = Arc::new(arrow::array::TimestampSecondArray::from(vec![Some(0), Some(i64::MAX)]).with_timezone("UTC"));
        assert!(days(&array, &TimeUnit::Second).unwrap_err().to_string().contains("past the range of a date"));
    }

    #[tokio::test]
    async fn the_rule_plans_utc_casts_only_and_keeps_the_output_names() {
        let ctx = SessionContext::new();
        ctx.add_optimizer_rule(Arc::new(UtcDateCasts));
        let sql = "SELECT CAST(ts AS DATE), CAST(paris AS DATE) AS d, count(*) AS n FROM (VALUES \
                   (arrow_cast('2024-03-06T23:30:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))'), \
                    arrow_cast('2024-03-06T23:30:00Z', 'Timestamp(Microsecond, Some(\"Europe/Paris\"))'))) AS t(ts, paris) \
                   GROUP BY CAST(ts AS DATE), CAST(paris AS DATE)";
        let frame = ctx.sql(sql).await.unwrap();
        let names: Vec<String> = frame.schema().fields().iter().map(|f| f.name().clone()).collect();
        let batches = frame.collect().await.unwrap();
        assert_eq!(batches[0].schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(), names);
        assert_eq!(names[1..], ["d".to_string(), "n".to_string()]);
        // 23:30 UTC is still the 6th; in Paris it is already the 7th.
        let dates = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(dates.contains("| 2024-03-06 ") && dates.contains("| 2024-03-07 "), "{dates}");
        let plan = arrow::util::pretty::pretty_format_batches(&ctx.sql(&format!("EXPLAIN {sql}")).await.unwrap().collect().await.unwrap())
            .unwrap()
            .to_string();
        assert!(plan.contains(NAME), "the UTC cast planned as {NAME}: {plan}");
        assert!(plan.contains("CAST(t.paris AS Date32)") || plan.contains("CAST(t.paris AS DATE)"), "Paris stays Arrow's cast: {plan}");
    }
}
