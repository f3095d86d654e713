//! SQL text a query may not hurt the process with. sqlparser builds a chain of operators
//! (`a = 1 OR a = 2 OR ...`, `1+1+...+1`) in a loop, into a tree as deep as the chain is
//! long; DataFusion then clones, hashes, compares and drops that tree recursively, and a few
//! thousand levels overflow a thread's stack and abort the whole server. So, before planning:
//!
//! - SQL text longer than [`SqlLimits::max_sql_bytes`] is refused;
//! - a long chain of `OR` is flattened: its equalities of one column to literals become one
//!   `column IN (...)` (what BI tools mean by a "keep only" filter of many values, and what
//!   DataFusion answers with a hash set), and what remains is rebuilt as a balanced tree, as
//!   is a long chain of `AND` (both are associative: the answer is the same);
//! - an expression still nested deeper than [`SqlLimits::max_expression_depth`] is refused
//!   with an error that says so. The refused tree is taken apart without recursion.
//!
//! Planning and execution then run on threads whose stack holds that depth
//! ([`crate::query::executor::QUERY_THREAD_STACK_BYTES`]).

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, TableFactor, Value, ValueWithSpan, VisitMut, VisitorMut};

/// Bounds on the SQL text of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Longest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// Deepest expression planned, after long `OR` / `AND` chains are flattened.
    pub max_expression_depth: usize,
}

/// 1 MiB: a 10,000-value filter of 40-character ids is about half of it.
pub const DEFAULT_MAX_SQL_BYTES: usize = 1 << 20;
/// Levels of nested expressions: hand-written SQL stays under 50.
pub const DEFAULT_MAX_EXPRESSION_DEPTH: usize = 256;
/// The deepest a configuration may allow: what the query threads' stacks
/// ([`crate::query::executor::QUERY_THREAD_STACK_BYTES`]) hold with room to spare.
pub const MAX_EXPRESSION_DEPTH: usize = 4096;

impl Default for SqlLimits {
    fn default() -> Self {
        Self { max_sql_bytes: DEFAULT_MAX_SQL_BYTES, max_expression_depth: DEFAULT_MAX_EXPRESSION_DEPTH }
    }
}

/// Chains shorter than this are left as they were written.
const FLATTEN_FROM: usize = 16;

/// Why SQL text is refused before planning.
#[derive(Debug, thiserror::Error)]
pub enum SqlRefused {
    #[error("the SQL text is {bytes} bytes, more than the {limit} this server accepts (max_sql_bytes): filter on fewer values, or join with a table of them")]
    TooLong { bytes: usize, limit: usize },
    #[error("an expression of this query is nested more than {limit} levels deep (max_expression_depth), which cannot be planned safely: use IN (...) for a list of values, or split the expression")]
    TooDeep { limit: usize },
    /// `TIMESTAMP AS OF` / `VERSION AS OF` / `FOR SYSTEM_TIME AS OF` on a table: DataFusion
    /// would answer from the newest snapshot, so the clause is refused, never dropped.
    #[error("a table version clause ({clause}) is not read from SQL: set the cclake-as-of call header (ADBC: adbc.flight.sql.rpc.call_header.cclake-as-of; JDBC: a connection property cclake-as-of) or `cclake query --as-of` to a lake version or an RFC 3339 time")]
    TableVersion { clause: String },
    #[error(transparent)]
    Parse(#[from] DataFusionError),
}

/// The words of a table version clause, which the default dialect does not parse: a parse
/// error in a statement holding them says how to ask for a past state instead.
const VERSION_CLAUSES: [&str; 3] = ["TIMESTAMP AS OF", "VERSION AS OF", "SYSTEM_TIME AS OF"];

/// Parses `sql` within `limits`, with long `OR`/`AND` chains flattened.
pub fn parse(state: &SessionState, sql: &str, limits: SqlLimits) -> Result<DFStatement, SqlRefused> {
    if sql.len() > limits.max_sql_bytes {
        return Err(SqlRefused::TooLong { bytes: sql.len(), limit: limits.max_sql_bytes });
    }
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(sql, &dialect).map_err(|e| {
        let words = sql.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase();
        match VERSION_CLAUSES.iter().find(|clause| words.contains(*clause)) {
            Some(clause) => SqlRefused::TableVersion { clause: clause.to_string() },
            None => SqlRefused::Parse(e),
        }
    })?;
    let mut guard = Guard { depth: 0, limit: limits.max_expression_depth, refused: Vec::new(), versioned: None };
    let outcome = guard_statement(&mut statement, &mut guard);
    for tree in guard.refused.drain(..) {
        dismantle(tree);
    }
    if let Some(clause) = guard.versioned {
        return Err(SqlRefused::TableVersion { clause });
    }
    match outcome {
        ControlFlow::Continue(()) => Ok(statement),
        ControlFlow::Break(()) => {
            // What is left of the statement is at most `limit` deep: dropped as usual.
            Err(SqlRefused::TooDeep { limit: limits.max_expression_depth })
        }
    }
}

fn guard_statement(statement: &mut DFStatement, guard: &mut Guard) -> ControlFlow<()> {
    match statement {
        DFStatement::Statement(inner) => inner.visit(guard),
        DFStatement::Explain(explain) => guard_statement(&mut explain.statement, guard),
        // DDL and COPY are refused by the read-only options after planning.
        _ => ControlFlow::Continue(()),
    }
}

struct Guard {
    depth: usize,
    limit: usize,
    /// Subtrees cut out past the limit, to be taken apart without recursion.
    refused: Vec<Expr>,
    /// A table version clause met (a dialect that parses one).
    versioned: Option<String>,
}

impl VisitorMut for Guard {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { version: Some(version), .. } = factor {
            self.versioned = Some(version.to_string());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.limit {
            self.refused.push(std::mem::replace(expr, null()));
            return ControlFlow::Break(());
        }
        if let Expr::BinaryOp { op: op @ (BinaryOperator::Or | BinaryOperator::And), .. } = expr {
            let op = op.clone();
            if chain_length(expr, &op) >= FLATTEN_FROM {
                let terms = chain(std::mem::replace(expr, null()), &op);
                let terms = if op == BinaryOperator::Or { membership(terms) } else { terms };
                *expr = balanced(terms, &op);
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

fn null() -> Expr {
    Expr::Value(ValueWithSpan::from(Value::Null))
}

/// How many terms a chain of `op` has (through parentheses), without recursion.
fn chain_length(expr: &Expr, op: &BinaryOperator) -> usize {
    let mut terms = 0;
    let mut todo = vec![expr];
    while let Some(expr) = todo.pop() {
        match expr {
            Expr::BinaryOp { left, op: o, right } if o == op => todo.extend([&**left, &**right]),
            Expr::Nested(inner) if matches!(&**inner, Expr::BinaryOp { op: o, .. } if o == op) => todo.push(inner),
            _ => terms += 1,
        }
    }
    terms
}

/// The terms of a chain of `op` (through parentheses), in order, without recursion.
fn chain(expr: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut terms = Vec::new();
    let mut todo = vec![expr];
    while let Some(expr) = todo.pop() {
        match expr {
            Expr::BinaryOp { left, op: o, right } if o == *op => {
                todo.push(*right);
                todo.push(*left);
            }
            Expr::Nested(inner) if matches!(&*inner, Expr::BinaryOp { op: o, .. } if o == op) => todo.push(*inner),
            other => terms.push(other),
        }
    }
    terms
}

/// `terms` joined by `op` as a balanced tree: as deep as the logarithm of their number.
fn balanced(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if terms.is_empty() {
        return null();
    }
    while terms.len() > 1 {
        let mut paired = Vec::with_capacity(terms.len() / 2 + 1);
        let mut it = terms.into_iter();
        while let Some(left) = it.next() {
            match it.next() {
                Some(right) => paired.push(Expr::BinaryOp { left: Box::new(left), op: op.clone(), right: Box::new(right) }),
                None => paired.push(left),
            }
        }
        terms = paired;
    }
    terms.pop().unwrap_or_else(null)
}

/// The disjuncts of an `OR` with each column's equalities to literals of one kind made one
/// `column IN (...)`, where the first of them was. `a = NULL OR a = 1` and
/// `a IN (NULL, 1)` have the same three-valued answer.
fn membership(terms: Vec<Expr>) -> Vec<Expr> {
    let mut out: Vec<Expr> = Vec::with_capacity(terms.len());
    // (column text, literal kind) → index in `out` of its IN list.
    let mut lists: std::collections::HashMap<(String, u8), usize> = std::collections::HashMap::new();
    for term in terms {
        let Some((column, literal)) = column_equals_literal(&term) else {
            out.push(term);
            continue;
        };
        let key = (column.to_string(), literal_kind(literal));
        match lists.get(&key) {
            Some(&at) => {
                if let Expr::InList { list, .. } = &mut out[at] {
                    list.push(literal.clone());
                }
            }
            None => {
                lists.insert(key, out.len());
                out.push(Expr::InList { expr: Box::new(column.clone()), list: vec![literal.clone()], negated: false });
            }
        }
    }
    // A list of one is the equality it came from.
    out.into_iter()
        .map(|term| match term {
            Expr::InList { expr, mut list, negated: false } if list.len() == 1 => {
                Expr::BinaryOp { left: expr, op: BinaryOperator::Eq, right: Box::new(list.remove(0)) }
            }
            other => other,
        })
        .collect()
}

fn column_equals_literal(term: &Expr) -> Option<(&Expr, &Expr)> {
    let Expr::BinaryOp { left, op: BinaryOperator::Eq, right } = term else { return None };
    let is_column = |e: &Expr| matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
    let is_literal = |e: &Expr| matches!(e, Expr::Value(v) if literal_kind_of(&v.value).is_some());
    if is_column(left) && is_literal(right) {
        Some((left, right))
    } else if is_column(right) && is_literal(left) {
        Some((right, left))
    } else {
        None
    }
}

fn literal_kind_of(value: &Value) -> Option<u8> {
    match value {
        Value::Number(..) => Some(0),
        Value::SingleQuotedString(_) => Some(1),
        Value::Boolean(_) => Some(2),
        _ => None,
    }
}

fn literal_kind(expr: &Expr) -> u8 {
    match expr {
        Expr::Value(v) => literal_kind_of(&v.value).unwrap_or(u8::MAX),
        _ => u8::MAX,
    }
}

/// Drops a tree of any depth without recursion along its operator chains.
fn dismantle(expr: Expr) {
    let mut todo = vec![expr];
    while let Some(expr) = todo.pop() {
        match expr {
            Expr::BinaryOp { left, right, .. } => {
                todo.push(*left);
                todo.push(*right);
            }
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsFalse(expr)
            | Expr::IsNotTrue(expr)
            | Expr::IsNotFalse(expr)
            | Expr::IsUnknown(expr)
            | Expr::IsNotUnknown(expr)
            | Expr::Cast { expr, .. }
            | Expr::Collate { expr, .. } => todo.push(*expr),
            Expr::InList { expr, list, .. } => {
                todo.push(*expr);
                todo.extend(list);
            }
            Expr::Between { expr, low, high, .. } => {
                todo.extend([*expr, *low, *high]);
            }
            Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
                todo.extend([*expr, *pattern]);
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => todo.extend([*a, *b]),
            other => drop(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    fn parsed(sql: &str) -> Result<String, SqlRefused> {
        let ctx = SessionContext::new();
        parse(&ctx.state(), sql, SqlLimits::default()).map(|s| s.to_string())
    }

    #[test]
    fn long_or_chains_of_equalities_become_in_lists() {
        let values: Vec<String> = (0..20).map(|i| format!("agent_id = 'a{i}'")).collect();
        let sql = format!("SELECT * FROM t WHERE {} OR state = 'x'", values.join(" OR "));
        let text = parsed(&sql).unwrap();
        let list: Vec<String> = (0..20).map(|i| format!("'a{i}'")).collect();
        assert_eq!(text, format!("SELECT * FROM t WHERE agent_id IN ({}) OR state = 'x'", list.join(", ")));
        // Short chains are left as written; numbers and strings are not mixed in one list.
        assert_eq!(parsed("SELECT 1 WHERE a = 1 OR a = 2").unwrap(), "SELECT 1 WHERE a = 1 OR a = 2");
        let mixed: Vec<String> = (0..20).map(|i| if i % 2 == 0 { format!("a = {i}") } else { format!("a = '{i}'") }).collect();
        let text = parsed(&format!("SELECT 1 WHERE {}", mixed.join(" OR "))).unwrap();
        assert!(text.contains("a IN (0, 2, 4") && text.contains("a IN ('1', '3'"), "{text}");
    }

    #[test]
    fn deep_expressions_are_refused_and_long_ones_too() {
        let sum = vec!["1"; 5_000].join("+");
        assert!(matches!(parsed(&format!("SELECT {sum}")), Err(SqlRefused::TooDeep { limit: 256 })));
        let ands: Vec<String> = (0..5_000).map(|i| format!("a <> {i}")).collect();
        assert!(parsed(&format!("SELECT 1 WHERE {}", ands.join(" AND "))).is_ok());
        let long = format!("SELECT '{}'", "x".repeat(DEFAULT_MAX_SQL_BYTES));
        assert!(matches!(parsed(&long), Err(SqlRefused::TooLong { .. })));
    }

    #[test]
    fn table_version_clauses_are_refused_in_every_dialect_never_dropped() {
        for sql in [
            "SELECT count(*) FROM fact_interactions TIMESTAMP AS OF '2024-03-05T00:00:00Z'",
            "SELECT count(*) FROM fact_interactions VERSION  AS  OF 3",
            "SELECT count(*) FROM fact_interactions FOR SYSTEM_TIME AS OF '2024-03-05'",
        ] {
            assert!(matches!(parsed(sql), Err(SqlRefused::TableVersion { .. })), "{sql}");
        }
        // A dialect that parses the clause: the guard finds it in the tree.
        let config = datafusion::prelude::SessionConfig::new().set_str("datafusion.sql_parser.dialect", "BigQuery");
        let state = datafusion::execution::SessionStateBuilder::new().with_config(config).build();
        let refused = parse(&state, "SELECT 1 FROM t FOR SYSTEM_TIME AS OF '2024-03-05'", SqlLimits::default());
        assert!(matches!(refused, Err(SqlRefused::TableVersion { .. })), "{refused:?}");
        assert!(parsed("SELECT 'VERSION AS OF' AS words").is_ok());
    }
}
