//! The read side's errors, and the one place a statement that is not a query is refused:
//! by the kind of its plan, so the CLI, the Flight service and any later protocol classify
//! the refusal by type, not by a message's words.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use deltalake::DeltaTableError;

/// Errors of the read side.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A statement that is not a query ([`ReadOnlyRefusal`]).
    #[error(transparent)]
    ReadOnly(ReadOnlyRefusal),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("cannot read Delta table {table}: {source}")]
    Delta {
        table: String,
        source: DeltaTableError,
    },
    #[error("views: {0}")]
    Views(String),
    #[error(transparent)]
    Catalog(Box<crate::catalog::CatalogError>),
    /// SQL text refused before planning: too long, or nested too deep ([`super::sql_guard`]).
    #[error("{0}")]
    Refused(String),
    /// The lake cannot be read as of the state asked for ([`super::as_of`]).
    #[error(transparent)]
    AsOf(Box<super::as_of::AsOfError>),
    #[error("cannot format results: {0}")]
    Format(#[from] arrow::error::ArrowError),
    /// Writing results failed; a closed pipe (`| head`) is [`std::io::ErrorKind::BrokenPipe`].
    #[error("cannot write results: {0}")]
    Output(#[from] std::io::Error),
}

/// A statement refused because it would change something: DDL, DML, `COPY`, or a session
/// statement (`SET`, transactions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cclake is read-only: {kind} is refused; only queries run")]
pub struct ReadOnlyRefusal {
    /// `CREATE TABLE`, `INSERT`, `COPY`, `SET VARIABLE`, ...
    pub kind: String,
}

impl ReadOnlyRefusal {
    /// The refusal carried by `error`, when it is one (however DataFusion wrapped it).
    pub fn find(error: &DataFusionError) -> Option<&ReadOnlyRefusal> {
        match error.find_root() {
            DataFusionError::External(inner) => inner.downcast_ref(),
            _ => None,
        }
    }
}

/// Refuses a plan that holds anything but a query, at any depth (subqueries included).
pub(crate) fn refuse_writes(plan: &LogicalPlan) -> Result<(), DataFusionError> {
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        let kind = match node {
            LogicalPlan::Ddl(ddl) => Some(ddl.name().to_string()),
            LogicalPlan::Dml(dml) => Some(dml.op.to_string()),
            LogicalPlan::Copy(_) => Some("COPY".to_string()),
            LogicalPlan::Statement(statement) => Some(statement.name().to_string()),
            _ => None,
        };
        Ok(match kind {
            Some(kind) => {
                refused = Some(kind);
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    })?;
    match refused {
        Some(kind) => Err(DataFusionError::External(Box::new(ReadOnlyRefusal { kind }))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn refusal(sql: &str) -> Option<String> {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1)").await.unwrap().collect().await.unwrap();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        refuse_writes(&plan).err().map(|e| ReadOnlyRefusal::find(&e).expect("a refusal, by type").kind.clone())
    }

    #[tokio::test]
    async fn every_kind_of_write_is_refused_by_its_plan_and_queries_pass() {
        assert_eq!(refusal("CREATE TABLE u (a INT)").await.as_deref(), Some("CreateMemoryTable"));
        assert_eq!(refusal("DROP TABLE t").await.as_deref(), Some("DropTable"));
        assert_eq!(refusal("INSERT INTO t VALUES (2)").await.as_deref(), Some("Insert Into"));
        assert_eq!(refusal("COPY t TO '/dev/null' STORED AS CSV").await.as_deref(), Some("COPY"));
        assert_eq!(refusal("SET datafusion.execution.batch_size = 1").await.as_deref(), Some("SetVariable"));
        assert_eq!(refusal("SELECT * FROM t WHERE column1 IN (SELECT 1)").await, None);
        assert_eq!(refusal("EXPLAIN SELECT 1").await, None);
    }
}
