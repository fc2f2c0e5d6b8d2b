//! Value trees from the wire's flat pre-order node lists: checked as they
//! are built (every container complete, no trailing nodes, a depth limit),
//! without recursion.

use super::error::ProtocolViolation;
use super::{Error, Value};
use crate::protocol::MAX_DEPTH;
use crate::protocol::{HandleInfo, Node, WireValue};

/// Builds a value tree from pre-order nodes without recursion; `adopt`
/// makes the value of each handle node.
pub(crate) fn build(
    value: WireValue,
    mut adopt: impl FnMut(HandleInfo) -> Value,
) -> Result<Value, Error> {
    enum Frame {
        Seq(fn(Vec<Value>) -> Value, usize, Vec<Value>),
        Dict(usize, Vec<Value>),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut nodes = value.0.into_iter();
    loop {
        let node = nodes.next().ok_or(ProtocolViolation::TruncatedValue)?;
        let mut finished = match node {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::Int(i),
            Node::BigInt(s) => Value::BigInt(s),
            Node::Float(f) => Value::Float(f),
            Node::Str(s) => Value::Str(s),
            Node::Bytes(b) => Value::Bytes(b),
            Node::Handle(info) => adopt(info),
            Node::Object(_) | Node::Callback(_) => {
                return Err(ProtocolViolation::ReferenceInReply.into());
            }
            Node::Tuple(n) | Node::List(n) | Node::Set(n) | Node::FrozenSet(n) | Node::Dict(n) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ProtocolViolation::TooDeep(MAX_DEPTH).into());
                }
                let n = n as usize;
                // Capacity is bounded by what actually arrived, not by the claim.
                let cap = n.min(nodes.len());
                let frame = match node {
                    Node::Tuple(_) => Frame::Seq(Value::Tuple, n, Vec::with_capacity(cap)),
                    Node::List(_) => Frame::Seq(Value::List, n, Vec::with_capacity(cap)),
                    Node::Set(_) => Frame::Seq(Value::Set, n, Vec::with_capacity(cap)),
                    Node::FrozenSet(_) => Frame::Seq(Value::FrozenSet, n, Vec::with_capacity(cap)),
                    _ => Frame::Dict(n.saturating_mul(2), Vec::with_capacity(cap)),
                };
                stack.push(frame);
                // Close containers that are complete (possibly empty).
                match close_complete(&mut stack) {
                    Some(v) => v,
                    None => continue,
                }
            }
        };
        // Add `finished` to its parent, closing parents as they complete.
        loop {
            match stack.last_mut() {
                None => {
                    if nodes.next().is_some() {
                        return Err(ProtocolViolation::TrailingNodes.into());
                    }
                    return Ok(finished);
                }
                Some(Frame::Seq(_, _, items)) | Some(Frame::Dict(_, items)) => items.push(finished),
            }
            match close_complete(&mut stack) {
                Some(v) => finished = v,
                None => break,
            }
        }
    }

    fn close_complete(stack: &mut Vec<Frame>) -> Option<Value> {
        let complete = match stack.last()? {
            Frame::Seq(_, n, items) => items.len() >= *n,
            Frame::Dict(n, items) => items.len() >= *n,
        };
        if !complete {
            return None;
        }
        Some(match stack.pop()? {
            Frame::Seq(make, _, items) => make(items),
            Frame::Dict(_, items) => {
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut iter = items.into_iter();
                while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                    pairs.push((k, v));
                }
                Value::Dict(pairs)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::protocol::strategies::{cases, nodes};

    /// An independent, recursive reading of the same rules: how many nodes
    /// the tree at the front of `nodes` spans, or `None` if it is not one.
    fn span(nodes: &[Node], depth: usize) -> Option<usize> {
        let (first, rest) = nodes.split_first()?;
        let children = match first {
            Node::Object(_) | Node::Callback(_) => return None,
            Node::Tuple(n) | Node::List(n) | Node::Set(n) | Node::FrozenSet(n) => *n as usize,
            Node::Dict(n) => *n as usize * 2,
            _ => return Some(1),
        };
        if depth >= MAX_DEPTH {
            return None;
        }
        let mut used = 1;
        for _ in 0..children {
            used += span(&rest[used - 1..], depth + 1)?;
        }
        Some(used)
    }

    /// The number of nodes a value is made of, as the wire spells it.
    fn count(value: &Value) -> usize {
        match value {
            Value::Tuple(items)
            | Value::List(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => 1 + items.iter().map(count).sum::<usize>(),
            Value::Dict(pairs) => {
                1 + pairs
                    .iter()
                    .map(|(k, v)| count(k) + count(v))
                    .sum::<usize>()
            }
            _ => 1,
        }
    }

    #[test]
    fn random_node_lists_build_exactly_when_they_are_one_tree() {
        let mut runner = TestRunner::new(Config::with_cases(cases(512)));
        runner
            .run(&nodes(), |input| {
                let well_formed = span(&input, 0) == Some(input.len());
                let built = build(WireValue(input.clone()), |info| Value::Int(info.id as i64));
                match built {
                    Ok(value) => {
                        prop_assert!(well_formed, "built from a broken list: {:?}", input);
                        prop_assert_eq!(count(&value), input.len());
                    }
                    Err(Error::Protocol(_)) => {
                        prop_assert!(!well_formed, "refused a whole tree: {:?}", input)
                    }
                    Err(other) => prop_assert!(false, "untyped refusal {:?}", other),
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let mut deep = vec![Node::List(1); MAX_DEPTH];
        deep.push(Node::None);
        assert!(build(WireValue(deep.clone()), |_| Value::None).is_ok());
        deep.insert(0, Node::List(1));
        assert!(matches!(
            build(WireValue(deep), |_| Value::None),
            Err(Error::Protocol(ProtocolViolation::TooDeep(MAX_DEPTH)))
        ));
    }
}
