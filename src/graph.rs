//! From stage declarations to nodes: matrix expansion, parameter resolution, node ids,
//! edges, topological order and cycle reports. Pure functions; `plan.rs` memoises them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{normalise_float, toml_to_json, ConfigError, RawConfig, SourceMap};
use crate::hash::{canonical_json, Hash, Hasher};
use crate::kinds::{closest, Registry};

/// A place in pipeline.toml (1-based line, column).
pub type Pos = Option<(usize, usize)>;

/// One `[stages.NAME]` table, checked for shape and with positions resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDecl {
    pub name: String,
    pub pos: Pos,
    pub kind: String,
    pub kind_pos: Pos,
    pub needs: Vec<(String, Pos)>,
    /// User params, as written (before defaults and substitution).
    pub params: Vec<(String, Value, Pos)>,
    /// Matrix axes sorted by name, values in the order written.
    pub matrix: Vec<(String, Vec<Value>)>,
    pub matrix_pos: Pos,
    /// `matrix_from = "stage"`: the matrix is that needed stage's (resolved when planning).
    pub matrix_from: Option<String>,
}

/// The `[pipeline]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineDecl {
    pub name: String,
    pub store: String,
    pub seed: u64,
}

/// The parsed file: pipeline settings and stage declarations by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declarations {
    pub file: PathBuf,
    pub pipeline: PipelineDecl,
    pub stages: BTreeMap<String, Arc<StageDecl>>,
}

/// A node's inputs from one needed stage: one node when paired or unmatrixed, all the
/// stage's instances (in matrix order) when gathered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InputRef {
    pub stage: String,
    pub nodes: Vec<String>,
    /// True when the needed stage has matrix axes this node does not pair on: the stage
    /// then receives a directory holding one subdirectory per instance.
    pub gathered: bool,
}

/// Everything that determines a node's output except the outputs of its inputs and the
/// contents of its file deps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecipe {
    pub id: String,
    pub stage: String,
    pub kind: String,
    pub version: String,
    /// What `version` is made of (see `StageKind::code`); shared by a stage's nodes.
    pub code: Arc<BTreeMap<String, String>>,
    pub matrix: BTreeMap<String, Value>,
    pub params: Value,
    pub inputs: Vec<InputRef>,
    pub deps: Vec<String>,
    /// blake3 of the fields above, in a fixed canonical form.
    pub recipe_hash: Hash,
}

/// Read the raw TOML into declarations, checking names and shapes.
pub fn declarations(map: &SourceMap, raw: RawConfig) -> Result<Declarations, ConfigError> {
    let span = |r: std::ops::Range<usize>| Some(map.line_col(r.start));
    let mut stages = BTreeMap::new();
    let mut env_names: HashMap<String, String> = HashMap::new();
    for (name, stage) in raw.stages {
        let pos = span(stage.span());
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(map.error(Some(stage.span()), format!(
                "stage name {name:?} may only use letters, digits, '_' and '-' (it names directories and environment variables); rename it"
            )));
        }
        if name.len() > MAX_STAGE_NAME {
            return Err(map.error(Some(stage.span()), format!(
                "stage name {}… is {} characters long; at most {MAX_STAGE_NAME} (it names files and directories): shorten it",
                &name[..24], name.len()
            )));
        }
        // Stages whose names differ only in '-' vs '_' or in case would share one
        // WORMFLOW_INPUT_<STAGE> variable.
        let env = crate::exec::command::input_env_name(&name);
        if let Some(other) = env_names.insert(env.clone(), name.clone()) {
            return Err(map.error(Some(stage.span()), format!(
                "stages {other:?} and {name:?} would both pass their output as ${env}; rename one of them"
            )));
        }
        let stage = stage.into_inner();
        let mut params = Vec::new();
        for (k, v) in stage.params {
            let value = toml_to_json(v.get_ref())
                .map_err(|e| map.error(Some(v.span()), format!("stages.{name}.params.{k}: {e}")))?;
            params.push((k, value, span(v.span())));
        }
        let mut matrix = Vec::new();
        let mut matrix_pos = None;
        if let Some(m) = stage.matrix {
            matrix_pos = span(m.span());
            if m.get_ref().is_empty() {
                return Err(map.error(Some(m.span()), format!(
                    "stages.{name}.matrix is empty; give at least one axis, e.g. matrix = {{ seed = [1, 2] }}, or remove it"
                )));
            }
            for (axis, values) in m.into_inner() {
                if axis.is_empty()
                    || !axis.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(map.error(Some(values.span()), format!(
                        "stages.{name}.matrix: axis name {axis:?} may only use letters, digits, '_' and '-' (it is part of node ids); rename it"
                    )));
                }
                if axis.len() > MAX_AXIS_NAME {
                    return Err(map.error(Some(values.span()), format!(
                        "stages.{name}.matrix: axis name {}… is {} characters long; at most {MAX_AXIS_NAME} (it names results/ folders, `axis=value`): shorten it",
                        &axis[..20], axis.len()
                    )));
                }
                if values.get_ref().is_empty() {
                    return Err(map.error(Some(values.span()), format!(
                        "stages.{name}.matrix.{axis} is an empty list: a matrix axis needs at least one value"
                    )));
                }
                let mut vs = Vec::new();
                for v in values.get_ref() {
                    let j = match v {
                        toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                            toml_to_json(v).map_err(|e| map.error(Some(values.span()), format!("stages.{name}.matrix.{axis}: {e}")))?
                        }
                        _ => return Err(map.error(Some(values.span()), format!(
                            "stages.{name}.matrix.{axis}: values must be strings, numbers or booleans"
                        ))),
                    };
                    if vs.contains(&j) {
                        return Err(map.error(Some(values.span()), format!(
                            "stages.{name}.matrix.{axis} lists {} twice; each value names one node", render_value(&j)
                        )));
                    }
                    vs.push(j);
                }
                matrix.push((axis, vs));
            }
        }
        let matrix_from = match stage.matrix_from {
            None => None,
            Some(from) => {
                let (span_of, from_name) = (from.span(), from.into_inner());
                if matrix_pos.is_some() {
                    return Err(map.error(Some(span_of), format!(
                        "stages.{name} has both matrix and matrix_from; keep one (matrix_from = {from_name:?} takes that stage's axes)"
                    )));
                }
                if !stage.needs.iter().any(|n| n.get_ref() == &from_name) {
                    return Err(map.error(Some(span_of), format!(
                        "stages.{name}.matrix_from = {from_name:?} names a stage it does not need; add it to needs"
                    )));
                }
                matrix_pos = span(span_of);
                Some(from_name)
            }
        };
        stages.insert(
            name.clone(),
            Arc::new(StageDecl {
                name,
                pos,
                kind: stage.kind.get_ref().clone(),
                kind_pos: span(stage.kind.span()),
                needs: stage
                    .needs
                    .into_iter()
                    .map(|n| (n.get_ref().clone(), span(n.span())))
                    .collect(),
                params,
                matrix,
                matrix_pos,
                matrix_from,
            }),
        );
    }
    let p = raw.pipeline.into_inner();
    Ok(Declarations {
        file: map.file.to_path_buf(),
        pipeline: PipelineDecl { name: p.name, store: p.store, seed: p.seed },
        stages,
    })
}

fn err(decls: &Declarations, pos: Pos, message: String) -> ConfigError {
    ConfigError { file: decls.file.clone(), line_col: pos, message }
}

/// A value as it appears in a node id and in `${matrix.x}` string substitution.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Longest stage name: node ids become file names (refs, logs, results/).
pub const MAX_STAGE_NAME: usize = 100;
/// Longest matrix axis name: `axis=value` folders in results/ keep 150 bytes for values.
pub const MAX_AXIS_NAME: usize = 100;

/// A matrix value as it appears in a node id: as written, except that a string which
/// could be read as another value — empty, a number, `true`/`false`/`null`, or holding
/// one of `,=[]"` — is quoted (JSON), so that two values never give the same id.
pub fn id_value(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let ambiguous = s.is_empty()
                || s.chars().any(|c| matches!(c, ',' | '=' | '[' | ']' | '"') || c.is_control())
                || serde_json::from_str::<Value>(s).is_ok_and(|parsed| !parsed.is_string());
            if ambiguous {
                Value::String(s.clone()).to_string()
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    }
}

/// The matrix coordinates `a=1,b=lstm` of an instance (axes by name).
pub fn coordinates(matrix: &BTreeMap<String, Value>) -> String {
    matrix.iter().map(|(k, v)| format!("{k}={}", id_value(v))).collect::<Vec<_>>().join(",")
}

/// The node id of a stage instance: `stage` or `stage[a=1,b=lstm]` (axes by name).
pub fn node_id(stage: &str, matrix: &BTreeMap<String, Value>) -> String {
    if matrix.is_empty() {
        return stage.to_string();
    }
    format!("{stage}[{}]", coordinates(matrix))
}

/// All combinations of a stage's matrix, in a defined order: axes by name, the last axis
/// varying fastest, values in the order written.
pub fn combinations(matrix: &[(String, Vec<Value>)]) -> Vec<BTreeMap<String, Value>> {
    let mut out = vec![BTreeMap::new()];
    for (axis, values) in matrix {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for combo in &out {
            for v in values {
                let mut c = combo.clone();
                c.insert(axis.clone(), v.clone());
                next.push(c);
            }
        }
        out = next;
    }
    out
}

/// Check every `needs` names a stage, and that the stage graph has no cycle.
pub fn check_needs(decls: &Declarations) -> Result<Vec<String>, ConfigError> {
    for stage in decls.stages.values() {
        for (need, pos) in &stage.needs {
            if !decls.stages.contains_key(need) {
                let hint = closest(need, decls.stages.keys().map(String::as_str))
                    .map(|c| format!("; did you mean {c:?}?"))
                    .unwrap_or_else(|| {
                        format!(
                            "; defined stages: {}",
                            decls.stages.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    });
                return Err(err(
                    decls,
                    *pos,
                    format!("stage {:?} needs {need:?}, which is not a stage{hint}", stage.name),
                ));
            }
            if need == &stage.name {
                return Err(err(
                    decls,
                    *pos,
                    format!(
                        "stage {:?} needs itself: a cycle {0} → {0}; remove it from `needs`",
                        stage.name
                    ),
                ));
            }
            if stage.needs.iter().filter(|(n, _)| n == need).count() > 1 {
                return Err(err(
                    decls,
                    *pos,
                    format!(
                        "stage {:?} needs {need:?} twice; list each stage once in `needs`",
                        stage.name
                    ),
                ));
            }
        }
    }
    topological_stages(decls)
}

/// Stages in dependency order (ties by name); a cycle is reported as `a → b → a`.
fn topological_stages(decls: &Declarations) -> Result<Vec<String>, ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'a>(
        decls: &'a Declarations,
        name: &'a str,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = stack.iter().position(|s| *s == name).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(name);
                let stage = &decls.stages[cycle[0]];
                return Err(err(decls, stage.pos, format!(
                    "the stages form a cycle: {}; a stage cannot depend on its own output, remove one of these `needs`",
                    cycle.join(" → ")
                )));
            }
            Mark::New => {}
        }
        marks.insert(name, Mark::Active);
        stack.push(name);
        for (need, _) in &decls.stages[name].needs {
            visit(decls, need, marks, stack, order)?;
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        order.push(name.to_string());
        Ok(())
    }
    let mut marks = HashMap::new();
    let mut order = Vec::new();
    for name in decls.stages.keys() {
        visit(decls, name, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// What a stage needs to know of a stage it consumes: its name and matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededStage {
    pub name: String,
    pub matrix: Vec<(String, Vec<Value>)>,
}

/// Expand one stage into its nodes. Needs only the stage's declaration and the matrices of
/// the stages it needs, so an edit elsewhere (even to a needed stage's params) leaves it
/// untouched.
pub fn expand_stage(
    decls_file: &std::path::Path,
    pipeline: &PipelineDecl,
    stage: &StageDecl,
    needed: &[NeededStage],
    registry: &Registry,
) -> Result<Vec<NodeRecipe>, ConfigError> {
    let e = |pos: Pos, message: String| ConfigError {
        file: decls_file.to_path_buf(),
        line_col: pos,
        message,
    };
    let name = &stage.name;
    let kind = registry.get(&stage.kind).ok_or_else(|| {
        let hint = closest(&stage.kind, registry.names())
            .map(|c| format!("did you mean {c:?}? "))
            .unwrap_or_default();
        e(
            stage.kind_pos,
            format!(
                "stages.{name}: unknown kind {:?}; {hint}known kinds: {}",
                stage.kind,
                registry.names().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let code = Arc::new(kind.code());
    let defaults = kind.defaults();
    if !kind.accepts_any_params() {
        for (k, _, pos) in &stage.params {
            if !defaults.contains_key(k) {
                let hint = closest(k, defaults.keys().map(String::as_str))
                    .map(|c| format!("did you mean {c:?}? "))
                    .unwrap_or_default();
                return Err(e(*pos, format!(
                    "stages.{name}.params.{k}: kind {:?} has no parameter {k:?}; {hint}its parameters: {}",
                    stage.kind,
                    defaults.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    let pairings: Vec<Pairing> = needed.iter().map(|n| Pairing::new(n, &stage.matrix)).collect();
    let mut nodes: Vec<NodeRecipe> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for combo in combinations(&stage.matrix) {
        let id = node_id(name, &combo);
        if let Some(&other) = ids.get(&id) {
            let before: &NodeRecipe = &nodes[other];
            let differs: Vec<String> = combo
                .iter()
                .filter(|(k, v)| before.matrix.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k} = {v} and {k} = {}", before.matrix[k]))
                .collect();
            return Err(e(
                stage.matrix_pos,
                format!(
                "stages.{name}.matrix: the values {} both name the node {id}; make them distinct",
                differs.join("; ")
            ),
            ));
        }
        ids.insert(id.clone(), nodes.len());
        let mut params: Map<String, Value> = defaults.clone();
        if params.contains_key("seed") {
            params.insert("seed".into(), Value::from(pipeline.seed));
        }
        for (k, v, pos) in &stage.params {
            let v = substitute(v, &combo, pipeline)
                .map_err(|msg| e(*pos, format!("stages.{name}.params.{k}: {msg}")))?;
            params.insert(k.clone(), v);
        }
        let params = Value::Object(params);
        kind.validate(&params).map_err(|msg| e(stage.pos, format!("{id}: {msg}")))?;

        let mut inputs = Vec::new();
        for (pairing, (_, need_pos)) in pairings.iter().zip(&stage.needs) {
            let shared: Vec<&Value> = pairing.shared_axes.iter().map(|a| &combo[a]).collect();
            let Some(matched) = pairing.by_shared_values.get(&shared) else {
                return Err(e(*need_pos, format!(
                    "{id} pairs with stage {:?} on their shared matrix axes, but {:?} has no instance with the same values; give both stages the same values on shared axes",
                    pairing.stage, pairing.stage
                )));
            };
            inputs.push(InputRef {
                stage: pairing.stage.clone(),
                nodes: matched.clone(),
                gathered: pairing.gathered,
            });
        }
        let deps = kind.file_deps(&params);
        let mut h = Hasher::new("wormflow-recipe-1");
        // Params that only choose how the node runs stay out of its key.
        let mut keyed = params.clone();
        if let Value::Object(map) = &mut keyed {
            for name in kind.execution_params() {
                map.remove(*name);
            }
        }
        h.field(&stage.kind).field(kind.version()).field(&canonical_json(&keyed));
        for input in &inputs {
            h.field(&input.stage).field(if input.gathered { "gather" } else { "single" });
            for n in &input.nodes {
                h.field(n);
            }
        }
        for d in &deps {
            h.field(d);
        }
        nodes.push(NodeRecipe {
            id,
            stage: name.clone(),
            kind: stage.kind.clone(),
            version: kind.version().to_string(),
            code: Arc::clone(&code),
            matrix: combo,
            params,
            inputs,
            deps,
            recipe_hash: h.finish(),
        });
    }
    Ok(nodes)
}

/// How one needed stage's instances are matched to this stage's: on the axes both have
/// (paired), gathering the needed stage's other axes (in its matrix order).
struct Pairing<'a> {
    stage: String,
    shared_axes: Vec<String>,
    gathered: bool,
    by_shared_values: HashMap<Vec<&'a Value>, Vec<String>>,
}

impl<'a> Pairing<'a> {
    fn new(needed: &'a NeededStage, own_matrix: &[(String, Vec<Value>)]) -> Pairing<'a> {
        let own_axes: Vec<&String> = own_matrix.iter().map(|(a, _)| a).collect();
        let shared_axes: Vec<String> = needed
            .matrix
            .iter()
            .map(|(a, _)| a)
            .filter(|a| own_axes.contains(a))
            .cloned()
            .collect();
        let mut by_shared_values: HashMap<Vec<&'a Value>, Vec<String>> = HashMap::new();
        for other in combinations(&needed.matrix) {
            let key: Vec<&'a Value> = shared_axes
                .iter()
                .map(|a| {
                    let (_, values) =
                        needed.matrix.iter().find(|(x, _)| x == a).expect("shared axis");
                    values.iter().find(|v| **v == other[a]).expect("value of the axis")
                })
                .collect();
            by_shared_values.entry(key).or_default().push(node_id(&needed.name, &other));
        }
        Pairing {
            stage: needed.name.clone(),
            gathered: shared_axes.len() < needed.matrix.len(),
            shared_axes,
            by_shared_values,
        }
    }
}

/// Replace `${matrix.AXIS}`, `${pipeline.seed}` and `${pipeline.name}` in string values.
/// A string that is exactly one placeholder takes the value's type (`"${matrix.n}"` → 3).
pub fn substitute(
    v: &Value,
    combo: &BTreeMap<String, Value>,
    pipeline: &PipelineDecl,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("${") => {
            let lookup = |name: &str| -> Result<Value, String> {
                if let Some(axis) = name.strip_prefix("matrix.") {
                    return combo.get(axis).cloned().ok_or_else(|| {
                        if combo.is_empty() {
                            format!("refers to ${{{name}}}, but this stage has no matrix; add matrix = {{ {axis} = [...] }} or remove the reference")
                        } else {
                            format!(
                                "refers to ${{{name}}}, but this stage's matrix has no axis {axis:?} (axes: {})",
                                combo.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        }
                    });
                }
                match name {
                    "pipeline.seed" => Ok(Value::from(pipeline.seed)),
                    "pipeline.name" => Ok(Value::from(pipeline.name.clone())),
                    _ => Err(format!("unknown placeholder ${{{name}}}; use ${{matrix.AXIS}}, ${{pipeline.seed}} or ${{pipeline.name}} (write $${{{name}}} for a literal ${{{name}}}, e.g. a shell variable)")),
                }
            };
            let trimmed = s.trim();
            if trimmed.starts_with("${")
                && !s.contains("$${")
                && trimmed.ends_with('}')
                && trimmed.matches("${").count() == 1
            {
                let value = lookup(&trimmed[2..trimmed.len() - 1])?;
                return Ok(match value {
                    Value::Number(n) => {
                        n.as_f64().map(normalise_float).transpose()?.unwrap_or(Value::Number(n))
                    }
                    other => other,
                });
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                // `$${…}` is a literal `${…}` (for the shell: `$${x%.h5}` → `${x%.h5}`).
                if rest[..start].ends_with('$') {
                    out.push_str(&rest[..start - 1]);
                    out.push_str("${");
                    rest = &rest[start + 2..];
                    continue;
                }
                out.push_str(&rest[..start]);
                let end = rest[start..]
                    .find('}')
                    .ok_or_else(|| format!("unclosed placeholder in {s:?}"))?
                    + start;
                out.push_str(&render_value(&lookup(&rest[start + 2..end])?));
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(
            a.iter().map(|x| substitute(x, combo, pipeline)).collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                o.insert(k.clone(), substitute(x, combo, pipeline)?);
            }
            Value::Object(o)
        }
        other => other.clone(),
    })
}

/// The expanded pipeline: nodes in topological order with their edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub pipeline: PipelineDecl,
    /// Nodes in a topological order (stage order, then matrix order).
    pub nodes: Vec<Arc<NodeRecipe>>,
    pub index: HashMap<String, usize>,
    /// For each node, the indices of its input nodes in key order.
    pub inputs: Vec<Vec<usize>>,
    /// For each node, the nodes that consume it.
    pub dependents: Vec<Vec<usize>>,
}

impl Graph {
    pub fn build(pipeline: PipelineDecl, per_stage: Vec<Arc<Vec<Arc<NodeRecipe>>>>) -> Graph {
        let nodes: Vec<Arc<NodeRecipe>> =
            per_stage.iter().flat_map(|v| v.iter().cloned()).collect();
        let index: HashMap<String, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect();
        let inputs: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| n.inputs.iter().flat_map(|r| r.nodes.iter().map(|id| index[id])).collect())
            .collect();
        let mut dependents = vec![Vec::new(); nodes.len()];
        for (i, ins) in inputs.iter().enumerate() {
            for &j in ins {
                dependents[j].push(i);
            }
        }
        Graph { pipeline, nodes, index, inputs, dependents }
    }

    /// The node a user names: its id exactly, or with its matrix axes in another order
    /// (`train[model=lstm,hidden=8]` for `train[hidden=8,model=lstm]`).
    pub fn lookup(&self, id: &str) -> Option<usize> {
        if let Some(&i) = self.index.get(id) {
            return Some(i);
        }
        let axes_of = |id: &str| -> Option<(String, Vec<String>)> {
            let (stage, rest) = id.split_once('[')?;
            let mut axes: Vec<String> =
                rest.strip_suffix(']')?.split(',').map(|a| a.trim().to_string()).collect();
            axes.sort();
            Some((stage.to_string(), axes))
        };
        let wanted = axes_of(id)?;
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].stage == wanted.0)
            .find(|&i| axes_of(&self.nodes[i].id).as_ref() == Some(&wanted))
    }

    /// Resolve user selectors (node ids or stage names) to node indices.
    pub fn select(&self, selectors: &[String]) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for s in selectors {
            if let Some(i) = self.lookup(s) {
                out.push(i);
                continue;
            }
            let of_stage: Vec<usize> =
                (0..self.nodes.len()).filter(|&i| &self.nodes[i].stage == s).collect();
            if of_stage.is_empty() {
                let stages = self.nodes.iter().map(|n| n.stage.as_str());
                let hint = closest(s, stages.chain(self.nodes.iter().map(|n| n.id.as_str())))
                    .map(|c| format!("; did you mean {c:?}?"))
                    .unwrap_or_else(|| "; `wormflow dag` lists the nodes".into());
                return Err(format!("no node or stage named {s:?}{hint}"));
            }
            out.extend(of_stage);
        }
        Ok(out)
    }

    /// What a command naming `targets` (node ids or stage names) covers: those nodes and
    /// everything they need, or — with no targets — the whole graph.
    pub fn targets(&self, targets: &[String]) -> Result<Vec<bool>, String> {
        if targets.is_empty() {
            return Ok(vec![true; self.nodes.len()]);
        }
        Ok(self.with_ancestors(&self.select(targets)?))
    }

    /// The selected nodes and everything they depend on, as a mask.
    pub fn with_ancestors(&self, selected: &[usize]) -> Vec<bool> {
        let mut mask = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = selected.to_vec();
        while let Some(i) = stack.pop() {
            if !mask[i] {
                mask[i] = true;
                stack.extend(&self.inputs[i]);
            }
        }
        mask
    }
}
