//! Bounds on what scalar functions produce. `repeat('x', 1500000000)` allocates 1.5 GB inside
//! one call, and `queue_name || repeat('x', 1000000)` a megabyte a row: DataFusion's memory
//! pool never sees either (only operators account memory), and no timeout can interrupt a
//! call that never yields. So every scalar function of a session, present or future, runs
//! inside [`Bounded`], and the `||` operator on strings is planned as one of them:
//!
//! - a function whose result has no fixed width (strings, binaries, lists, ...) is first
//!   called on the batch's first row; if that row's result times the batch's rows is past
//!   what the query's memory pool has left, the call is refused before the batch is worked on;
//! - every result is measured, and one past what the pool has left is refused (the query
//!   ends with `ResourcesExhausted`, and its memory is released);
//! - a constant folded while planning (no query pool yet) may be at most
//!   [`CONSTANT_SHARE`] of the query's memory limit: no statement needs a larger literal;
//! - a few functions whose cost follows from their arguments (`repeat`, `lpad`, `range`, ...)
//!   are checked before any work, and `levenshtein` against a bound on work per call, so that
//!   one call ends within a fraction of a second and the query's timeout is honoured.
//!
//! The query's pool reaches the functions through [`QueryMemory`], a configuration
//! extension set on each query's own copy of its session's options
//! (`super::execute_in_own_pool`). The original function does the work: the wrapper
//! delegates every trait method to it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ConfigOptions, ExtensionOptions};
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool};
use datafusion::prelude::SessionContext;
use super::concat::{ConcatOperator, ConcatPlanner};

/// Cells of the edit-distance table one `levenshtein` call may fill (over all its rows):
/// about a tenth of a second in a release build. 100,000 x 100,000 characters is 10^10.
pub const LEVENSHTEIN_MAX_CELLS: u128 = 200_000_000;

/// What a guarded function's call would cost, worked out from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cost {
    /// `repeat(string, count)`: bytes of the result.
    Repeat,
    /// `lpad` / `rpad(string, length [, fill])`: `length` characters of up to 4 bytes.
    Pad,
    /// `replace(string, from, to)`: every occurrence of `from` may become `to`.
    Replace,
    /// `regexp_replace(string, pattern, replacement [, flags])`: an empty match between
    /// every two characters may become `replacement`.
    RegexpReplace,
    /// `range` / `generate_series(start, stop [, step])` over integers, dates or timestamps:
    /// 8 bytes a value.
    Range,
    /// `array_repeat(element, count)`.
    ArrayRepeat,
    /// `array_resize(array, size [, value])`: 8 bytes or more a value.
    ArrayResize,
    /// `levenshtein(a, b)`: cells of the edit-distance table, a bound on time.
    Levenshtein,
}

/// The guarded functions, by the name they are registered under.
const GUARDED: &[(&str, Cost)] = &[
    ("repeat", Cost::Repeat),
    ("lpad", Cost::Pad),
    ("rpad", Cost::Pad),
    ("replace", Cost::Replace),
    ("regexp_replace", Cost::RegexpReplace),
    ("range", Cost::Range),
    ("generate_series", Cost::Range),
    ("array_repeat", Cost::ArrayRepeat),
    ("array_resize", Cost::ArrayResize),
    ("levenshtein", Cost::Levenshtein),
];

/// The share of the query's memory limit a constant folded while planning may take.
pub const CONSTANT_SHARE: usize = 16;

/// Bounds every scalar function of `ctx` (and the `||` operator on strings, planned as one):
/// no call may produce more than the query's memory pool has left, `limit_bytes` at most.
pub fn bound_functions(ctx: &SessionContext, limit_bytes: usize) {
    let functions = ctx.state().scalar_functions().clone();
    let mut names: Vec<&String> = functions.keys().collect();
    names.sort();
    for name in names {
        let function = &functions[name];
        // Aliases name the same function: it is wrapped once, under its own name.
        if function.name() != name || function.inner().downcast_ref::<Bounded>().is_some() {
            continue;
        }
        let cost = GUARDED.iter().find(|(guarded, _)| guarded == name).map(|(_, cost)| *cost);
        ctx.register_udf(Bounded::wrap(Arc::clone(function.inner()), cost, limit_bytes));
    }
    let concat = Arc::new(Bounded::wrap(Arc::new(ConcatOperator::new()), None, limit_bytes));
    let state = ctx.state_ref();
    let mut state = state.write();
    if let Err(e) = state.register_expr_planner(Arc::new(ConcatPlanner { concat })) {
        tracing::warn!(error = %e, "the || operator keeps DataFusion's unbounded form");
    }
}

/// The memory pool of the query being run, for the functions it calls: a configuration
/// extension on the query's own copy of its session's options. Absent while planning.
#[derive(Debug, Clone, Default)]
pub struct QueryMemory(pub Option<Arc<dyn MemoryPool>>);

impl QueryMemory {
    /// Bytes the pool has not handed out.
    fn available(&self) -> Option<usize> {
        let pool = self.0.as_ref()?;
        match pool.memory_limit() {
            MemoryLimit::Finite(limit) => Some(limit.saturating_sub(pool.reserved())),
            _ => None,
        }
    }
}

impl ConfigExtension for QueryMemory {
    const PREFIX: &'static str = "cclake_query_memory";
}

impl ExtensionOptions for QueryMemory {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        Err(DataFusionError::Configuration(format!("{key} cannot be set: it is the running query's memory pool")))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

/// A bounded function: checks what each call would cost and produces, around the original.
#[derive(Debug)]
struct Bounded {
    inner: Arc<dyn ScalarUDFImpl>,
    /// The cost worked out from the arguments before any work, for the functions that have one.
    cost: Option<Cost>,
    limit_bytes: usize,
}

impl Bounded {
    fn wrap(inner: Arc<dyn ScalarUDFImpl>, cost: Option<Cost>, limit_bytes: usize) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { inner, cost, limit_bytes })
    }

    /// What a call may produce: what the query's pool has left (the query's limit at most);
    /// for a call on constants alone (one value, folded while planning or computed once per
    /// batch), a share of the limit. And how to say it.
    fn budget(&self, config: &ConfigOptions, constant: bool) -> (usize, String) {
        let limit = human_bytes(self.limit_bytes as u128);
        let available = config.extensions.get::<QueryMemory>().and_then(QueryMemory::available);
        match available {
            Some(available) if !constant => {
                let budget = available.min(self.limit_bytes);
                (budget, format!("the {} this query has left of its memory limit of {limit}", human_bytes(budget as u128)))
            }
            _ => {
                let budget = (self.limit_bytes / CONSTANT_SHARE).min(available.unwrap_or(usize::MAX));
                (budget, format!("the {} one value may hold (1/{CONSTANT_SHARE} of the query memory limit of {limit})", human_bytes(budget as u128)))
            }
        }
    }

    fn refuse(&self, what: &str, bytes: u128, budget: &str) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!("{} would produce {} {what}, more than {budget}", self.inner.name(), human_bytes(bytes)))
    }
}

/// Bytes a value holds (a slice counts only its own rows).
fn value_bytes(value: &ColumnarValue) -> u128 {
    match value {
        ColumnarValue::Scalar(scalar) => scalar.size() as u128,
        ColumnarValue::Array(array) => array.to_data().get_slice_memory_size().unwrap_or_else(|_| array.get_array_memory_size()) as u128,
    }
}

/// Whether values of `data_type` may be of any size (their bytes do not follow from the rows).
fn unbounded_width(data_type: &DataType) -> bool {
    !data_type.is_primitive() && !matches!(data_type, DataType::Boolean | DataType::Null | DataType::FixedSizeBinary(_))
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name() && self.cost == other.cost && self.limit_bytes == other.limit_bytes
    }
}

impl Eq for Bounded {}

impl Hash for Bounded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.cost.hash(state);
        self.limit_bytes.hash(state);
    }
}

/// One argument, value by value: a scalar stands for every row.
struct PerRow(Vec<i64>);

impl PerRow {
    fn at(&self, row: usize) -> u128 {
        let value = if self.0.len() == 1 { self.0[0] } else { self.0.get(row).copied().unwrap_or(0) };
        value.max(0) as u128
    }

}

/// A scalar as a one-row array, an array as it is.
fn as_array(value: &ColumnarValue) -> Result<ArrayRef> {
    match value {
        ColumnarValue::Array(array) => Ok(Arc::clone(array)),
        ColumnarValue::Scalar(scalar) => scalar.to_array_of_size(1),
    }
}

/// Byte lengths of a string (or binary) argument; NULL counts as 0. Other types: `None`.
fn byte_lengths(value: &ColumnarValue) -> Option<PerRow> {
    let array = as_array(value).ok()?;
    let lengths = arrow::compute::kernels::length::length(&array).ok()?;
    integers_of(&lengths)
}

/// Integer values of an argument (cast to Int64); NULL counts as 0. Not castable: `None`.
fn integers(value: &ColumnarValue) -> Option<PerRow> {
    integers_of(&as_array(value).ok()?)
}

fn integers_of(array: &ArrayRef) -> Option<PerRow> {
    if !array.data_type().is_integer() && !array.data_type().is_floating() {
        return None;
    }
    let cast = arrow::compute::cast(array, &DataType::Int64).ok()?;
    let values = cast.as_primitive::<Int64Type>();
    Some(PerRow((0..values.len()).map(|i| if values.is_null(i) { 0 } else { values.value(i) }).collect()))
}

/// Whether every value of a string argument is ASCII (one byte per character).
fn is_ascii(value: &ColumnarValue) -> bool {
    match value {
        ColumnarValue::Scalar(scalar) => scalar.try_as_str().flatten().is_none_or(str::is_ascii),
        ColumnarValue::Array(array) => {
            let Ok(text) = arrow::compute::cast(array, &DataType::Utf8) else {
                return false;
            };
            text.as_string::<i32>().iter().flatten().all(str::is_ascii)
        }
    }
}

impl Bounded {
    /// The bytes (or, for `levenshtein`, table cells) the call would produce, summed over rows.
    fn cost_of(&self, args: &[ColumnarValue], rows: usize) -> u128 {
        let rows = rows.max(1);
        let arg = |i: usize| args.get(i);
        let sum = |f: &dyn Fn(usize) -> u128| (0..rows).map(f).fold(0u128, u128::saturating_add);
        let Some(cost) = self.cost else { return 0 };
        match cost {
            Cost::Repeat => match (arg(0).and_then(byte_lengths), arg(1).and_then(integers)) {
                (Some(len), Some(count)) => sum(&|r| len.at(r) * count.at(r)),
                _ => 0,
            },
            Cost::Pad => {
                let Some(length) = arg(1).and_then(integers) else { return 0 };
                let ascii = arg(0).is_none_or(is_ascii) && arg(2).is_none_or(is_ascii);
                let width = if ascii { 1 } else { 4 };
                sum(&|r| length.at(r) * width)
            }
            Cost::Replace => match (arg(0).and_then(byte_lengths), arg(1).and_then(byte_lengths), arg(2).and_then(byte_lengths)) {
                (Some(text), Some(from), Some(to)) => {
                    sum(&|r| text.at(r) + (text.at(r) / from.at(r).max(1) + 1) * to.at(r))
                }
                _ => 0,
            },
            Cost::RegexpReplace => match (arg(0).and_then(byte_lengths), arg(2).and_then(byte_lengths)) {
                (Some(text), Some(replacement)) => sum(&|r| text.at(r) + (text.at(r) + 1) * replacement.at(r)),
                _ => 0,
            },
            Cost::Range => range_cost(args, rows),
            Cost::ArrayRepeat => {
                let Some(count) = arg(1).and_then(integers) else { return 0 };
                let element = arg(0).and_then(byte_lengths);
                sum(&|r| count.at(r) * element.as_ref().map_or(8, |e| e.at(r).max(8)))
            }
            Cost::ArrayResize => match arg(1).and_then(integers) {
                Some(size) => sum(&|r| size.at(r) * 8),
                None => 0,
            },
            Cost::Levenshtein => match (arg(0).and_then(byte_lengths), arg(1).and_then(byte_lengths)) {
                (Some(a), Some(b)) => sum(&|r| a.at(r) * b.at(r)),
                _ => 0,
            },
        }
    }

    fn check(&self, args: &[ColumnarValue], rows: usize, budget: usize, said: &str) -> Result<()> {
        let cost = self.cost_of(args, rows);
        if self.cost == Some(Cost::Levenshtein) {
            if cost > LEVENSHTEIN_MAX_CELLS {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "levenshtein over these strings would compare {cost} character pairs in one call, more than the limit of {LEVENSHTEIN_MAX_CELLS}"
                )));
            }
        } else if cost > budget as u128 {
            return Err(self.refuse("in one call", cost, said));
        }
        Ok(())
    }
}

/// Bytes of `range` / `generate_series`: 8 bytes a value. Integers step by an integer; dates
/// and timestamps (read as nanoseconds) by an interval (a month counted as 28 days, the
/// shortest, so the count is never underestimated).
fn range_cost(args: &[ColumnarValue], rows: usize) -> u128 {
    let values = match args.iter().map(integers).collect::<Option<Vec<PerRow>>>() {
        Some(values) => values,
        None => match temporal_range(args) {
            Some(values) => values,
            None => return 0,
        },
    };
    let at = |v: &PerRow, r: usize| if v.0.len() == 1 { v.0[0] } else { v.0.get(r).copied().unwrap_or(0) };
    (0..rows.max(1))
        .map(|r| {
            let (start, stop, step) = match values.len() {
                1 => (0, at(&values[0], r), 1),
                2 => (at(&values[0], r), at(&values[1], r), 1),
                _ => (at(&values[0], r), at(&values[1], r), at(&values[2], r)),
            };
            let step = step.unsigned_abs().max(1) as u128;
            (start.abs_diff(stop) as u128 / step + 1) * 8
        })
        .fold(0u128, u128::saturating_add)
}

/// Start, stop (nanoseconds) and step (a scalar interval, in nanoseconds) of a date or
/// timestamp range; a range of another shape: `None`.
fn temporal_range(args: &[ColumnarValue]) -> Option<Vec<PerRow>> {
    const DAY: i64 = 86_400_000_000_000;
    let [start, stop, ColumnarValue::Scalar(step)] = args else { return None };
    let step = match step {
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            i64::from(i.months) * 28 * DAY + i64::from(i.days) * DAY + i.nanoseconds
        }
        ScalarValue::IntervalDayTime(Some(i)) => i64::from(i.days) * DAY + i64::from(i.milliseconds) * 1_000_000,
        ScalarValue::IntervalYearMonth(Some(months)) => i64::from(*months) * 28 * DAY,
        _ => return None,
    };
    let nanos = |value: &ColumnarValue| -> Option<PerRow> {
        let array = as_array(value).ok()?;
        let per_unit = match array.data_type() {
            DataType::Date32 => DAY,
            DataType::Date64 => 1_000_000,
            DataType::Timestamp(unit, _) => match unit {
                arrow::datatypes::TimeUnit::Second => 1_000_000_000,
                arrow::datatypes::TimeUnit::Millisecond => 1_000_000,
                arrow::datatypes::TimeUnit::Microsecond => 1_000,
                arrow::datatypes::TimeUnit::Nanosecond => 1,
            },
            _ => return None,
        };
        let values = arrow::compute::cast(&array, &DataType::Int64).ok()?;
        let values = values.as_primitive::<Int64Type>();
        Some(PerRow((0..values.len()).map(|i| if values.is_null(i) { 0 } else { values.value(i).saturating_mul(per_unit) }).collect()))
    };
    Some(vec![nanos(start)?, nanos(stop)?, PerRow(vec![step])])
}

/// `1.5 GB`, `256 MB`, `12 KB`, `800 bytes`.
fn human_bytes(bytes: u128) -> String {
    const UNITS: [(u128, &str); 3] = [(1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    for (size, unit) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} bytes")
}

#[warn(clippy::missing_trait_methods)] // Delegates, so it implements every trait method.
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[allow(deprecated)]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[allow(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let per_row = args.args.iter().any(|arg| matches!(arg, ColumnarValue::Array(_)));
        let (budget, said) = self.budget(&args.config_options, !per_row);
        self.check(&args.args, rows, budget, &said)?;
        if per_row && rows > 1 && unbounded_width(args.return_field.data_type()) {
            // The first row's result, times the rows: refused before the batch is worked on.
            let sample = ScalarFunctionArgs {
                args: args
                    .args
                    .iter()
                    .map(|arg| match arg {
                        ColumnarValue::Array(array) => ColumnarValue::Array(array.slice(0, 1)),
                        scalar => scalar.clone(),
                    })
                    .collect(),
                arg_fields: args.arg_fields.clone(),
                number_rows: 1,
                return_field: Arc::clone(&args.return_field),
                config_options: Arc::clone(&args.config_options),
            };
            let first = value_bytes(&self.inner.invoke_with_args(sample)?);
            let projected = first.saturating_mul(rows as u128);
            if projected > budget as u128 {
                return Err(self.refuse(&format!("for {rows} rows (judged by the first)"), projected, &said));
            }
        }
        let result = self.inner.invoke_with_args(args)?;
        let bytes = value_bytes(&result);
        if bytes > budget as u128 {
            return Err(self.refuse(if per_row { "for one batch" } else { "in one value" }, bytes, &said));
        }
        Ok(result)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.with_updated_config(config)?;
        Some(Self::wrap(Arc::clone(updated.inner()), self.cost, self.limit_bytes))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<datafusion::logical_expr::preimage::PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(&self, args: &'a [Expr]) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(&self, interval: &Interval, inputs: &[&Interval]) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<datafusion::logical_expr::StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[datafusion::logical_expr::ExpressionPlacement]) -> datafusion::logical_expr::ExpressionPlacement {
        self.inner.placement(args)
    }
}

