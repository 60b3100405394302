//! `--where`: a filter over the sweep table's rows, and nothing else. polars SQL would also
//! run subqueries and table functions (`… IN (SELECT x FROM read_csv('/any/file'))`): file
//! access from a filter, and panics where polars lacks a feature. So the expression is
//! parsed first, with the parser polars uses (sqlparser, same version and dialect), and
//! only what a row filter needs gets through: the table's columns, literal values,
//! comparisons and arithmetic, AND/OR/NOT, IN (list), BETWEEN, LIKE, IS [NOT] NULL, CASE, and a
//! few scalar functions.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_relations, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// Scalar functions a filter may call: none reads files or other tables.
const FUNCTIONS: &[&str] = &[
    "abs",
    "round",
    "sqrt",
    "exp",
    "ln",
    "log",
    "log2",
    "log10",
    "pow",
    "power",
    "sign",
    "lower",
    "upper",
    "length",
    "starts_with",
    "ends_with",
    "coalesce",
    "nullif",
    "greatest",
    "least",
];

/// Check `sql` (the filter after requoting; `written` as the user typed it) against the
/// whitelist and `columns`. `Err` is one line saying what to change.
pub fn check(sql: &str, written: &str, columns: &[&str]) -> Result<(), String> {
    let bad = |why: String| format!("--where {written:?}: {why}");
    let mut parser = Parser::new(&GenericDialect)
        .try_with_sql(sql)
        .map_err(|e| bad(format!("is not an expression ({e})")))?;
    let expr = parser.parse_expr().map_err(|e| bad(format!("is not an expression ({e})")))?;
    if parser.peek_token().token != Token::EOF {
        return Err(bad(format!(
            "unexpected {} after the expression; a filter is one expression, e.g. 'ratio < 1 and model == \"lstm\"'",
            parser.peek_token().token
        )));
    }
    if let ControlFlow::Break(table) = visit_relations(&expr, |r| ControlFlow::Break(r.to_string()))
    {
        return Err(bad(format!("reads from {table}; a filter may use only the sweep table's columns (no tables, subqueries or files)")));
    }
    match visit_expressions(&expr, |e| match allowed(e, columns) {
        Ok(()) => ControlFlow::Continue(()),
        Err(why) => ControlFlow::Break(why),
    }) {
        ControlFlow::Break(why) => Err(bad(why)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn allowed(e: &Expr, columns: &[&str]) -> Result<(), String> {
    match e {
        Expr::Identifier(id) if columns.contains(&id.value.as_str()) => Ok(()),
        Expr::Identifier(id) => Err(format!(
            "no column {:?} in the sweep table; its columns: {} (names with brackets or dots go in backticks)",
            id.value,
            columns.join(", ")
        )),
        Expr::Value(_)
        | Expr::BinaryOp { .. }
        | Expr::UnaryOp { .. }
        | Expr::Nested(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::Between { .. }
        | Expr::InList { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::Case { .. } => Ok(()),
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let plain_args = match &f.args {
                FunctionArguments::List(l) => {
                    l.duplicate_treatment.is_none()
                        && l.clauses.is_empty()
                        && l.args
                            .iter()
                            .all(|a| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(_))))
                }
                _ => false,
            };
            let plain = plain_args
                && matches!(f.parameters, FunctionArguments::None)
                && f.over.is_none()
                && f.filter.is_none()
                && f.within_group.is_empty();
            if plain && FUNCTIONS.contains(&name.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "{name}(…) is not allowed in a filter; it may call {} with plain arguments",
                    FUNCTIONS.join(", ")
                ))
            }
        }
        other => Err(format!(
            "`{other}` is not allowed in a filter; use the table's columns, values, comparisons, AND/OR/NOT, IN (…), BETWEEN, LIKE and IS NULL"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    const COLUMNS: &[&str] = &["node", "model", "ratio", "val_loss[Kato2015]"];

    #[test]
    fn row_filters_pass() {
        for ok in [
            "ratio < 1 and model = 'lstm'",
            "model IN ('lstm', 'ctrnn') OR ratio BETWEEN 0.5 AND 1",
            "abs(ratio - 1) < 0.1 and node LIKE 'train%' and `val_loss[Kato2015]` IS NOT NULL",
            "NOT (ratio > 2)",
        ] {
            assert_eq!(check(ok, ok, COLUMNS), Ok(()), "{ok}");
        }
    }

    #[test]
    fn files_tables_and_unknown_columns_are_refused() {
        for (bad, says) in [
            ("node IN (SELECT nosuch FROM read_csv('/etc/passwd'))", "reads from read_csv"),
            ("node IN (SELECT x FROM read_parquet('f.parquet'))", "reads from read_parquet"),
            ("EXISTS (SELECT 1)", "not allowed"),
            ("read_csv('/etc/passwd') = 1", "read_csv(…) is not allowed"),
            ("nosuch > 1", "no column \"nosuch\""),
            ("ratio < 1 extra", "unexpected"),
            ("count(*) over () > 1", "not allowed"),
            ("CAST(ratio AS DATE) IS NULL", "not allowed"),
        ] {
            let e = check(bad, bad, COLUMNS).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
