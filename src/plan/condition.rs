//! Advance and rollback conditions such as `"<= baseline * 1.1 + 0.001"`.
//!
//! A condition is a comparison operator followed by an arithmetic expression;
//! the measured value is the implicit left-hand side. Grammar:
//!
//! ```text
//! condition := cmp expr
//! cmp       := "<" | "<=" | ">" | ">=" | "==" | "!="
//! expr      := term (("+" | "-") term)*
//! term      := unary (("*" | "/") unary)*
//! unary     := "-" unary | primary
//! primary   := NUMBER | "baseline" | "(" expr ")"
//! NUMBER    := DIGITS ("." DIGITS)? (("e" | "E") ("+" | "-")? DIGITS)? "%"?
//! ```

use std::fmt;
use std::str::FromStr;

/// Parentheses and unary minus signs may nest at most this deep, so the
/// recursive-descent parser cannot overflow the stack.
const MAX_DEPTH: usize = 64;
/// Long flat chains (`1 + 1 + ...`) build deep trees without recursion in the
/// parser, but evaluating, printing and dropping them recurses.
const MAX_NODES: usize = 1000;

const OPERATOR_HELP: &str = "a condition starts with one of <, <=, >, >=, ==, !=, e.g. \"< 0.05\"";
const ONE_COMPARISON_HELP: &str = "a condition has exactly one comparison operator";
const NEG_PRECEDENCE: u8 = 3;
const ATOM_PRECEDENCE: u8 = 4;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    fn compare(self, value: f64, threshold: f64) -> bool {
        match self {
            CmpOp::Lt => value < threshold,
            CmpOp::Le => value <= threshold,
            CmpOp::Gt => value > threshold,
            CmpOp::Ge => value >= threshold,
            CmpOp::Eq => value == threshold,
            CmpOp::Ne => value != threshold,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A binary arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 1,
            BinOp::Mul | BinOp::Div => 2,
        }
    }

    fn apply(self, lhs: f64, rhs: f64) -> f64 {
        match self {
            BinOp::Add => lhs + rhs,
            BinOp::Sub => lhs - rhs,
            BinOp::Mul => lhs * rhs,
            BinOp::Div => lhs / rhs,
        }
    }
}

/// How a number was written: a percentage is shown back as one (`5%`, not `0.05`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Written {
    Plain,
    /// Written as this many percent (the value is a hundredth of it).
    Percent(f64),
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64, Written),
    Baseline,
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

impl Expr {
    fn has_percent(&self) -> bool {
        match self {
            Expr::Number(_, written) => matches!(written, Written::Percent(_)),
            Expr::Baseline => false,
            Expr::Neg(inner) => inner.has_percent(),
            Expr::Binary(_, lhs, rhs) => lhs.has_percent() || rhs.has_percent(),
        }
    }

    fn uses_baseline(&self) -> bool {
        match self {
            Expr::Number(..) => false,
            Expr::Baseline => true,
            Expr::Neg(inner) => inner.uses_baseline(),
            Expr::Binary(_, lhs, rhs) => lhs.uses_baseline() || rhs.uses_baseline(),
        }
    }

    /// Every intermediate result must be finite: `1 / (1 / 0)` is 0 in IEEE
    /// arithmetic, but a threshold built on a division by zero is meaningless.
    fn eval(&self, baseline: Option<f64>) -> Option<f64> {
        let value = match self {
            Expr::Number(n, _) => *n,
            Expr::Baseline => baseline?,
            Expr::Neg(inner) => -inner.eval(baseline)?,
            Expr::Binary(op, lhs, rhs) => op.apply(lhs.eval(baseline)?, rhs.eval(baseline)?),
        };
        value.is_finite().then_some(value)
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Number(..) | Expr::Baseline => ATOM_PRECEDENCE,
            Expr::Neg(_) => NEG_PRECEDENCE,
            Expr::Binary(op, _, _) => op.precedence(),
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({expr})")
    } else {
        write!(f, "{expr}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n, Written::Plain) => write!(f, "{n}"),
            Expr::Number(_, Written::Percent(p)) => write!(f, "{p}%"),
            Expr::Baseline => f.write_str("baseline"),
            Expr::Neg(inner) => {
                f.write_str("-")?;
                write_operand(f, inner, inner.precedence() < NEG_PRECEDENCE)
            }
            Expr::Binary(op, lhs, rhs) => {
                write_operand(f, lhs, lhs.precedence() < op.precedence())?;
                write!(f, " {} ", op.symbol())?;
                // Operators are left-associative, so an equal-precedence right
                // operand needs parentheses to keep its shape: 1 - (2 - 3).
                write_operand(f, rhs, rhs.precedence() <= op.precedence())
            }
        }
    }
}

/// A parsed condition: `value <op> expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub op: CmpOp,
    pub expr: Expr,
}

impl Condition {
    /// Whether the condition was written in percent (`> 5%`): its metric's readings are then
    /// shown in percent too (`14.87%`, not `0.1487`).
    pub fn in_percent(&self) -> bool {
        self.expr.has_percent()
    }

    /// Whether the right-hand side refers to `baseline`.
    pub fn uses_baseline(&self) -> bool {
        self.expr.uses_baseline()
    }

    /// The right-hand side evaluated; None when it needs a baseline that is
    /// None, or the result is not finite (e.g. division by zero, NaN baseline).
    pub fn threshold(&self, baseline: Option<f64>) -> Option<f64> {
        self.expr.eval(baseline)
    }

    /// Whether the measured value satisfies the condition; None when the
    /// threshold cannot be computed (see threshold) or value is NaN.
    pub fn holds(&self, value: f64, baseline: Option<f64>) -> Option<bool> {
        if value.is_nan() {
            return None;
        }
        let threshold = self.threshold(baseline)?;
        Some(self.op.compare(value, threshold))
    }

    /// For conditions whose thresholds do not depend on baseline: is there any
    /// finite value satisfying both? Used to warn when a metric's advance and
    /// rollback ranges overlap. Returns None when either uses baseline.
    pub fn overlaps(&self, other: &Condition) -> Option<bool> {
        if self.uses_baseline() || other.uses_baseline() {
            return None;
        }
        let lhs = (self.op, self.threshold(None)?);
        let rhs = (other.op, other.threshold(None)?);
        Some(ranges_meet(lhs, rhs))
    }
}

/// Whether the sets of reals `{x | x op_a a}` and `{x | x op_b b}` intersect.
fn ranges_meet((op_a, a): (CmpOp, f64), (op_b, b): (CmpOp, f64)) -> bool {
    use CmpOp::{Eq, Ge, Gt, Le, Lt, Ne};
    match (op_a, op_b) {
        (Eq, _) => op_b.compare(a, b),
        (_, Eq) => op_a.compare(b, a),
        // A ray or a punctured line minus one more point is never empty.
        (Ne, _) | (_, Ne) => true,
        (Lt | Le, Gt | Ge) => upper_meets_lower((op_a, a), (op_b, b)),
        (Gt | Ge, Lt | Le) => upper_meets_lower((op_b, b), (op_a, a)),
        // Two rays pointing the same way always share a tail.
        _ => true,
    }
}

fn upper_meets_lower((upper_op, upper): (CmpOp, f64), (lower_op, lower): (CmpOp, f64)) -> bool {
    lower < upper || (lower == upper && upper_op == CmpOp::Le && lower_op == CmpOp::Ge)
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.expr)
    }
}

impl FromStr for Condition {
    type Err = ConditionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text)
    }
}

/// Where a parse error is inside the condition text: byte offset and length
/// (len >= 1 except at end of input where len may be 0 or 1 pointing just past
/// the end), so a caller can draw a caret under it.
///
/// This parser always uses len 1 at the end of input, with `offset ==
/// text.len()`: draw the caret just past the text, but do not slice with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConditionError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub help: Option<String>,
}

impl ConditionError {
    fn new(offset: usize, len: usize, message: impl Into<String>) -> Self {
        ConditionError {
            offset,
            len,
            message: message.into(),
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Parses a condition such as `"<= baseline * 1.1 + 0.001"`.
pub fn parse(text: &str) -> Result<Condition, ConditionError> {
    Parser::new(text).condition()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Cmp(CmpOp),
    /// A lone `=`, kept as a token so the parser can suggest `==`.
    Assign,
    /// `=<` or `=>`; carries the operator the user probably meant.
    Reversed(&'static str),
    Num(f64, Written),
    Baseline,
    Ident,
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
}

impl Tok {
    fn is_comparison(self) -> bool {
        matches!(self, Tok::Cmp(_) | Tok::Assign | Tok::Reversed(_))
    }

    fn is_operand_start(self) -> bool {
        matches!(
            self,
            Tok::Num(..) | Tok::Baseline | Tok::Ident | Tok::LParen
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

/// Produces tokens on demand, so the first error reported is the leftmost one.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn next_token(&mut self) -> Result<Option<Token>, ConditionError> {
        self.skip_whitespace();
        let start = self.pos;
        let Some(c) = self.text[start..].chars().next() else {
            return Ok(None);
        };
        let tok = match c {
            '0'..='9' | '.' => self.number(start)?,
            'a'..='z' | 'A'..='Z' | '_' => self.word(start),
            '<' | '>' | '=' | '!' => self.comparison(c, start)?,
            _ => self.punctuation(c, start)?,
        };
        Ok(Some(Token {
            tok,
            start,
            end: self.pos,
        }))
    }

    fn skip_whitespace(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn punctuation(&mut self, c: char, start: usize) -> Result<Tok, ConditionError> {
        let tok = match c {
            '+' => Tok::Plus,
            '-' => Tok::Minus,
            '*' => Tok::Star,
            '/' => Tok::Slash,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '%' => {
                return Err(ConditionError::new(start, 1, "`%` must follow a number")
                    .with_help("write it right after the digits, e.g. 5%"));
            }
            _ => return Err(unexpected_character(c, start)),
        };
        self.pos = start + 1;
        Ok(tok)
    }

    fn comparison(&mut self, c: char, start: usize) -> Result<Tok, ConditionError> {
        let next = self.text.as_bytes().get(start + 1).copied();
        let (tok, len) = match (c, next) {
            ('<', Some(b'=')) => (Tok::Cmp(CmpOp::Le), 2),
            ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
            ('>', Some(b'=')) => (Tok::Cmp(CmpOp::Ge), 2),
            ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
            ('=', Some(b'=')) => (Tok::Cmp(CmpOp::Eq), 2),
            ('=', Some(b'<')) => (Tok::Reversed("<="), 2),
            ('=', Some(b'>')) => (Tok::Reversed(">="), 2),
            ('=', _) => (Tok::Assign, 1),
            ('!', Some(b'=')) => (Tok::Cmp(CmpOp::Ne), 2),
            _ => {
                return Err(
                    unexpected_character(c, start).with_help("use != to compare for inequality")
                );
            }
        };
        self.pos = start + len;
        Ok(tok)
    }

    fn word(&mut self, start: usize) -> Tok {
        let len = self.text[start..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        self.pos = start + len;
        if &self.text[start..self.pos] == "baseline" {
            Tok::Baseline
        } else {
            Tok::Ident
        }
    }

    fn number(&mut self, start: usize) -> Result<Tok, ConditionError> {
        let end = self.number_end(start);
        let lexeme = &self.text[start..end];
        let percent = self.text[end..].starts_with('%');
        self.pos = end + usize::from(percent);
        if !is_decimal(lexeme) {
            return Err(invalid_number(lexeme, start));
        }
        match number_value(lexeme, percent) {
            Some(value) if value.is_finite() => {
                let written = match lexeme.parse::<f64>() {
                    Ok(as_written) if percent => Written::Percent(as_written),
                    _ => Written::Plain,
                };
                Ok(Tok::Num(value, written))
            }
            _ => {
                let shown = &self.text[start..self.pos];
                Err(ConditionError::new(
                    start,
                    shown.len(),
                    format!("number `{shown}` is too large"),
                )
                .with_help("numbers must be below about 1.8e308"))
            }
        }
    }

    /// Swallows everything that could plausibly belong to the number (letters,
    /// dots, an exponent sign), so `1.2.3` or `2baseline` is reported whole
    /// instead of as a confusing sequence of smaller errors.
    fn number_end(&self, start: usize) -> usize {
        let bytes = self.text.as_bytes();
        let mut end = start;
        let mut letters = 0;
        while let Some(&b) = bytes.get(end) {
            let exponent_sign =
                matches!(b, b'+' | b'-') && letters == 1 && matches!(bytes[end - 1], b'e' | b'E');
            if b.is_ascii_alphabetic() {
                letters += 1;
            } else if !(b.is_ascii_digit() || b == b'.' || b == b'_' || exponent_sign) {
                break;
            }
            end += 1;
        }
        end
    }
}

fn unexpected_character(c: char, start: usize) -> ConditionError {
    let shown = if c.is_control() {
        c.escape_debug().to_string()
    } else {
        c.to_string()
    };
    ConditionError::new(
        start,
        c.len_utf8(),
        format!("unexpected character `{shown}`"),
    )
}

fn invalid_number(lexeme: &str, start: usize) -> ConditionError {
    let help = if lexeme.starts_with('.') {
        "write a digit before the `.`, e.g. 0.5"
    } else if lexeme.ends_with('.') {
        "write a digit after the `.`, e.g. 5.0"
    } else if lexeme.contains("baseline") {
        "write `*` between a number and `baseline`, e.g. 2 * baseline"
    } else {
        "a number looks like 12, 0.5, 1e-3 or 5%"
    };
    ConditionError::new(start, lexeme.len(), format!("invalid number `{lexeme}`")).with_help(help)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `DIGITS ("." DIGITS)? (("e" | "E") ("+" | "-")? DIGITS)?`
fn is_decimal(s: &str) -> bool {
    let (mantissa, exponent) = split_exponent(s);
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    all_digits(int)
        && frac.is_none_or(all_digits)
        && exponent.is_none_or(|e| all_digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

fn split_exponent(s: &str) -> (&str, Option<&str>) {
    match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// A percentage is parsed by shifting the exponent in the text rather than by
/// dividing by 100, so `0.1%` becomes exactly the f64 nearest to 0.001.
fn number_value(lexeme: &str, percent: bool) -> Option<f64> {
    if !percent {
        return lexeme.parse().ok();
    }
    let (mantissa, exponent) = split_exponent(lexeme);
    match exponent.map_or(Some(0), |e| e.parse::<i64>().ok()) {
        Some(exp) => format!("{mantissa}e{}", exp.saturating_sub(2)).parse().ok(),
        // An exponent too long for i64 is already 0 or infinite; dividing is exact enough.
        None => lexeme.parse::<f64>().ok().map(|v| v / 100.0),
    }
}

fn looks_like_baseline(name: &str) -> bool {
    name.len() <= 12 && strsim::levenshtein(&name.to_ascii_lowercase(), "baseline") <= 2
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// `Some(None)` means the end of input has been peeked.
    peeked: Option<Option<Token>>,
    /// The last consumed token, named in "expected ... after `*`" errors.
    prev: Option<Token>,
    depth: usize,
    nodes: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            lexer: Lexer { text, pos: 0 },
            peeked: None,
            prev: None,
            depth: 0,
            nodes: 0,
        }
    }

    fn peek(&mut self) -> Result<Option<Token>, ConditionError> {
        if let Some(token) = self.peeked {
            return Ok(token);
        }
        let token = self.lexer.next_token()?;
        self.peeked = Some(token);
        Ok(token)
    }

    fn bump(&mut self) {
        self.prev = self.peeked.take().flatten();
    }

    fn slice(&self, token: Token) -> &'a str {
        &self.lexer.text[token.start..token.end]
    }

    fn error_at(&self, token: Token, message: impl Into<String>) -> ConditionError {
        ConditionError::new(token.start, token.end - token.start, message)
    }

    fn error_at_end(&self, message: impl Into<String>) -> ConditionError {
        ConditionError::new(self.lexer.text.len(), 1, message)
    }

    fn condition(&mut self) -> Result<Condition, ConditionError> {
        let op = self.comparison()?;
        let expr = self.expr()?;
        self.finish()?;
        Ok(Condition { op, expr })
    }

    fn comparison(&mut self) -> Result<CmpOp, ConditionError> {
        let Some(token) = self.peek()? else {
            return Err(self
                .error_at_end("expected a comparison operator")
                .with_help(OPERATOR_HELP));
        };
        let found = self.slice(token);
        match token.tok {
            Tok::Cmp(op) => {
                self.bump();
                Ok(op)
            }
            Tok::Assign => Err(self
                .error_at(token, "expected a comparison operator, found `=`")
                .with_help("use == to compare for equality")),
            Tok::Reversed(meant) => Err(self
                .error_at(
                    token,
                    format!("expected a comparison operator, found `{found}`"),
                )
                .with_help(format!("did you mean {meant}?"))),
            _ => Err(self
                .error_at(token, "expected a comparison operator")
                .with_help(OPERATOR_HELP)),
        }
    }

    fn expr(&mut self) -> Result<Expr, ConditionError> {
        let mut lhs = self.term()?;
        while let Some(op) = self.binary_op(1)? {
            self.bump();
            let rhs = self.term()?;
            lhs = self.node(Expr::Binary(op, Box::new(lhs), Box::new(rhs)))?;
        }
        Ok(lhs)
    }

    fn term(&mut self) -> Result<Expr, ConditionError> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binary_op(2)? {
            self.bump();
            let rhs = self.unary()?;
            lhs = self.node(Expr::Binary(op, Box::new(lhs), Box::new(rhs)))?;
        }
        Ok(lhs)
    }

    /// The next token as a binary operator of the given precedence, if it is one.
    fn binary_op(&mut self, precedence: u8) -> Result<Option<BinOp>, ConditionError> {
        let op = match self.peek()?.map(|t| t.tok) {
            Some(Tok::Plus) => BinOp::Add,
            Some(Tok::Minus) => BinOp::Sub,
            Some(Tok::Star) => BinOp::Mul,
            Some(Tok::Slash) => BinOp::Div,
            _ => return Ok(None),
        };
        Ok((op.precedence() == precedence).then_some(op))
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        match self.peek()? {
            Some(token) if token.tok == Tok::Minus => {
                self.bump();
                self.enter(token)?;
                let inner = self.unary()?;
                self.depth -= 1;
                self.node(Expr::Neg(Box::new(inner)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        let Some(token) = self.peek()? else {
            return Err(self.expected_operand(None));
        };
        match token.tok {
            Tok::Num(value, written) => {
                self.bump();
                self.node(Expr::Number(value, written))
            }
            Tok::Baseline => {
                self.bump();
                self.node(Expr::Baseline)
            }
            Tok::Ident => Err(self.unknown_name(token)),
            Tok::LParen => self.group(token),
            _ => Err(self.expected_operand(Some(token))),
        }
    }

    fn group(&mut self, open: Token) -> Result<Expr, ConditionError> {
        self.bump();
        self.enter(open)?;
        let inner = self.expr()?;
        self.depth -= 1;
        match self.peek()? {
            Some(token) if token.tok == Tok::RParen => {
                self.bump();
                Ok(inner)
            }
            None => Err(self
                .error_at(open, "unclosed `(`")
                .with_help("add a `)` to close it")),
            Some(token) => {
                let found = self.slice(token);
                let error = self.error_at(
                    token,
                    format!("expected an operator or `)`, found `{found}`"),
                );
                Err(self.help_for_stray(token, error))
            }
        }
    }

    fn finish(&mut self) -> Result<(), ConditionError> {
        let Some(token) = self.peek()? else {
            return Ok(());
        };
        if token.tok == Tok::RParen {
            return Err(self
                .error_at(token, "unexpected `)`")
                .with_help("it has no matching `(`"));
        }
        let found = self.slice(token);
        let error = self.error_at(
            token,
            format!("unexpected `{found}` after the end of the condition"),
        );
        Err(self.help_for_stray(token, error))
    }

    /// Help for a token that appears where only an operator could continue.
    fn help_for_stray(&self, token: Token, error: ConditionError) -> ConditionError {
        if token.tok.is_comparison() {
            error.with_help(ONE_COMPARISON_HELP)
        } else if token.tok.is_operand_start() {
            error.with_help("is an operator such as `*` or `+` missing before it?")
        } else {
            error
        }
    }

    fn expected_operand(&self, found: Option<Token>) -> ConditionError {
        let after = self.prev.map_or("", |t| self.slice(t));
        let message = format!("expected a number, `baseline` or `(` after `{after}`");
        let Some(token) = found else {
            return self.error_at_end(message);
        };
        let error = self.error_at(token, format!("{message}, found `{}`", self.slice(token)));
        if token.tok.is_comparison() {
            error.with_help(ONE_COMPARISON_HELP)
        } else {
            error
        }
    }

    fn unknown_name(&self, token: Token) -> ConditionError {
        let name = self.slice(token);
        let help = if looks_like_baseline(name) {
            "did you mean `baseline`?"
        } else {
            "the only name a condition may use is `baseline`"
        };
        self.error_at(token, format!("unknown name `{name}`"))
            .with_help(help)
    }

    fn enter(&mut self, token: Token) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(token, "too deeply nested").with_help(format!(
                "parentheses and minus signs may nest at most {MAX_DEPTH} deep"
            )));
        }
        Ok(())
    }

    fn node(&mut self, expr: Expr) -> Result<Expr, ConditionError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            // Nodes are built right after consuming a token, so prev is always set.
            let (offset, len) = self
                .prev
                .map_or((self.lexer.pos, 1), |t| (t.start, t.end - t.start));
            return Err(
                ConditionError::new(offset, len, "condition is too long").with_help(format!(
                    "a condition may have at most {MAX_NODES} numbers, names and operators"
                )),
            );
        }
        Ok(expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(text: &str) -> Condition {
        parse(text).unwrap_or_else(|e| panic!("{text:?} failed to parse: {e:?}"))
    }

    fn num(value: f64) -> Expr {
        Expr::Number(value, Written::Plain)
    }

    fn base() -> Expr {
        Expr::Baseline
    }

    fn neg(inner: Expr) -> Expr {
        Expr::Neg(Box::new(inner))
    }

    fn bin(op: BinOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary(op, Box::new(lhs), Box::new(rhs))
    }

    #[test]
    fn parses_every_operator() {
        let cases = [
            ("< 1", CmpOp::Lt),
            ("<= 1", CmpOp::Le),
            ("> 1", CmpOp::Gt),
            (">= 1", CmpOp::Ge),
            ("== 1", CmpOp::Eq),
            ("!= 1", CmpOp::Ne),
            ("<1", CmpOp::Lt),
            ("<=1", CmpOp::Le),
            (">1", CmpOp::Gt),
            (">=1", CmpOp::Ge),
            ("==1", CmpOp::Eq),
            ("!=1", CmpOp::Ne),
            ("  \t>=   1  ", CmpOp::Ge),
        ];
        for (text, op) in cases {
            assert_eq!(cond(text), Condition { op, expr: num(1.0) }, "{text:?}");
        }
    }

    #[test]
    fn cmp_op_displays_its_symbol() {
        let ops = [
            (CmpOp::Lt, "<"),
            (CmpOp::Le, "<="),
            (CmpOp::Gt, ">"),
            (CmpOp::Ge, ">="),
            (CmpOp::Eq, "=="),
            (CmpOp::Ne, "!="),
        ];
        for (op, symbol) in ops {
            assert_eq!(op.to_string(), symbol);
        }
    }

    #[test]
    fn precedence_and_associativity() {
        use BinOp::{Add, Div, Mul, Sub};
        let cases = [
            (
                "< 1 - 2 - 3",
                bin(Sub, bin(Sub, num(1.0), num(2.0)), num(3.0)),
            ),
            (
                "< 2 * 3 + 4",
                bin(Add, bin(Mul, num(2.0), num(3.0)), num(4.0)),
            ),
            (
                "< 2 + 3 * 4",
                bin(Add, num(2.0), bin(Mul, num(3.0), num(4.0))),
            ),
            ("< -2 * 3", bin(Mul, neg(num(2.0)), num(3.0))),
            (
                "< (1 + 2) * 3",
                bin(Mul, bin(Add, num(1.0), num(2.0)), num(3.0)),
            ),
            (
                "< 8 / 4 / 2",
                bin(Div, bin(Div, num(8.0), num(4.0)), num(2.0)),
            ),
            (
                "< 1 - (2 - 3)",
                bin(Sub, num(1.0), bin(Sub, num(2.0), num(3.0))),
            ),
            ("< 2 * -3", bin(Mul, num(2.0), neg(num(3.0)))),
            ("< --1", neg(neg(num(1.0)))),
            ("< -(1 + 2)", neg(bin(Add, num(1.0), num(2.0)))),
            ("< ((baseline))", base()),
            (
                "<= baseline * 1.1 + 0.001",
                bin(Add, bin(Mul, base(), num(1.1)), num(0.001)),
            ),
        ];
        for (text, expr) in cases {
            assert_eq!(cond(text).expr, expr, "{text:?}");
        }
    }

    #[test]
    fn numbers_and_percentages() {
        let cases = [
            ("< 300", 300.0),
            ("< 0.5", 0.5),
            ("< 1e3", 1000.0),
            ("< 1E-3", 0.001),
            ("< 2.5e+2", 250.0),
            ("> 5%", 0.05),
            ("> 0.1%", 0.001),
            (">= 99.5%", 0.995),
            ("< 110%", 1.1),
            ("< 1e2%", 1.0),
            ("< 5e-1%", 0.005),
            ("< 1e-400", 0.0),
        ];
        for (text, value) in cases {
            let Expr::Number(parsed, written) = cond(text).expr else {
                panic!("{text:?} is not a number")
            };
            assert_eq!(parsed, value, "{text:?}");
            assert_eq!(matches!(written, Written::Percent(_)), text.ends_with('%'));
        }
        assert_eq!(
            cond("<= baseline * 110%").expr,
            bin(
                BinOp::Mul,
                base(),
                Expr::Number(1.1, Written::Percent(110.0))
            )
        );
    }

    #[test]
    fn uses_baseline() {
        let cases = [
            ("< 5", false),
            ("< -(1 + 2) * 3", false),
            ("< baseline", true),
            ("< 1 + 2 * -baseline", true),
            ("< (baseline) / 2", true),
        ];
        for (text, expected) in cases {
            assert_eq!(cond(text).uses_baseline(), expected, "{text:?}");
        }
    }

    #[test]
    fn threshold() {
        let cases: [(&str, Option<f64>, Option<f64>); 12] = [
            ("< 5", None, Some(5.0)),
            ("< 5", Some(7.0), Some(5.0)),
            ("< 1 - 2 - 3", None, Some(-4.0)),
            ("< 8 / 4 / 2", None, Some(1.0)),
            ("< 2 * 3 + 4", None, Some(10.0)),
            ("< baseline * 2", Some(3.0), Some(6.0)),
            ("< baseline * 2", None, None),
            ("< baseline", Some(f64::NAN), None),
            ("< baseline", Some(f64::INFINITY), None),
            ("< 1 / 0", None, None),
            ("< 1 / (1 / 0)", None, None),
            ("< 1 / baseline", Some(0.0), None),
        ];
        for (text, baseline, expected) in cases {
            assert_eq!(
                cond(text).threshold(baseline),
                expected,
                "{text:?} {baseline:?}"
            );
        }
        assert_eq!(cond("< 1e308 * 10").threshold(None), None);
    }

    #[test]
    fn holds() {
        let nan = f64::NAN;
        let cases: &[(&str, f64, Option<f64>, Option<bool>)] = &[
            ("< 5", 4.0, None, Some(true)),
            ("< 5", 5.0, None, Some(false)),
            ("< 5", 6.0, None, Some(false)),
            ("<= 5", 5.0, None, Some(true)),
            ("<= 5", 5.1, None, Some(false)),
            ("> 5", 5.0, None, Some(false)),
            ("> 5", 5.1, None, Some(true)),
            (">= 5", 5.0, None, Some(true)),
            (">= 5", 4.9, None, Some(false)),
            ("== 0", 0.0, None, Some(true)),
            ("== 0", -0.0, None, Some(true)),
            ("== 0", 1e-9, None, Some(false)),
            ("!= 0", 0.0, None, Some(false)),
            ("!= 0", 2.0, None, Some(true)),
            ("> 5%", 0.05, None, Some(false)),
            ("> 5%", 0.06, None, Some(true)),
            ("< 300", f64::NEG_INFINITY, None, Some(true)),
            ("<= baseline * 1.5", 15.0, Some(10.0), Some(true)),
            ("<= baseline * 1.5", 15.1, Some(10.0), Some(false)),
            ("<= baseline * 1.5", 1.0, None, None),
            ("<= baseline * 1.5", 1.0, Some(nan), None),
            ("< 1 / 0", 1.0, None, None),
            ("< 10 / baseline", 1.0, Some(0.0), None),
            ("< 5", nan, None, None),
            ("!= 5", nan, None, None),
        ];
        for &(text, value, baseline, expected) in cases {
            assert_eq!(
                cond(text).holds(value, baseline),
                expected,
                "{text:?} value={value} baseline={baseline:?}"
            );
        }
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        let cases = [
            ("<= baseline * 1.1 + 0.001", "<= baseline * 1.1 + 0.001"),
            ("<=baseline*1.1+0.001", "<= baseline * 1.1 + 0.001"),
            ("> 5%", "> 5%"),
            (">= 99.5%", ">= 99.5%"),
            ("< 1e2%", "< 100%"),
            ("<= baseline * 110%", "<= baseline * 110%"),
            ("< 1e3", "< 1000"),
            ("!= 0", "!= 0"),
            ("< 1 - 2 - 3", "< 1 - 2 - 3"),
            ("< 1 - (2 - 3)", "< 1 - (2 - 3)"),
            ("< 1 + (2 + 3)", "< 1 + (2 + 3)"),
            ("< (1 + 2) + 3", "< 1 + 2 + 3"),
            ("< (1 + 2) * 3", "< (1 + 2) * 3"),
            ("< 8 / (4 / 2)", "< 8 / (4 / 2)"),
            ("< 8 / (4 * 2)", "< 8 / (4 * 2)"),
            ("< (2 * 3) + 4", "< 2 * 3 + 4"),
            ("< -2 * 3", "< -2 * 3"),
            ("< -(2 * 3)", "< -(2 * 3)"),
            ("< - - 1", "< --1"),
            ("< 1 - -1", "< 1 - -1"),
            ("< -(-(baseline))", "< --baseline"),
            ("== ((1))", "== 1"),
            ("< 1e-7", "< 0.0000001"),
        ];
        for (text, canonical) in cases {
            let parsed = cond(text);
            assert_eq!(parsed.to_string(), canonical, "{text:?}");
            assert_eq!(cond(canonical), parsed, "{text:?}");
        }
    }

    #[test]
    fn from_str_matches_parse() {
        let parsed: Condition = "< baseline".parse().unwrap();
        assert_eq!(parsed, cond("< baseline"));
        assert_eq!("nope".parse::<Condition>(), parse("nope"));
    }

    #[test]
    fn overlaps() {
        let cases = [
            ("< 300", "> 800", Some(false)),
            ("< 300", "> 200", Some(true)),
            ("<= 5", ">= 5", Some(true)),
            ("< 5", ">= 5", Some(false)),
            ("<= 5", "> 5", Some(false)),
            ("== 1", "> 0", Some(true)),
            ("== 1", "> 1", Some(false)),
            ("== 1", "== 1", Some(true)),
            ("== 1", "== 2", Some(false)),
            ("!= 1", "== 1", Some(false)),
            ("!= 1", "!= 2", Some(true)),
            ("!= 1", "< 0", Some(true)),
            ("< 1", "< 0", Some(true)),
            ("> 1", ">= 100", Some(true)),
            ("< baseline", "> 5", None),
            ("< 5", "> baseline * 2", None),
            ("< 1 / 0", "> 5", None),
        ];
        for (a, b, expected) in cases {
            assert_eq!(cond(a).overlaps(&cond(b)), expected, "{a:?} vs {b:?}");
            assert_eq!(cond(b).overlaps(&cond(a)), expected, "{b:?} vs {a:?}");
        }
    }

    const OP_HELP: Option<&str> = Some(OPERATOR_HELP);
    const ONE_CMP: Option<&str> = Some(ONE_COMPARISON_HELP);
    const NOT_A_NAME: Option<&str> = Some("the only name a condition may use is `baseline`");
    const MEANT_BASELINE: Option<&str> = Some("did you mean `baseline`?");
    const MISSING_OP: Option<&str> = Some("is an operator such as `*` or `+` missing before it?");
    const NUMBER_HELP: Option<&str> = Some("a number looks like 12, 0.5, 1e-3 or 5%");
    const PERCENT_HELP: Option<&str> = Some("write it right after the digits, e.g. 5%");

    #[test]
    fn errors() {
        type Case = (
            &'static str,
            usize,
            usize,
            &'static str,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("", 0, 1, "expected a comparison operator", OP_HELP),
            ("   ", 3, 1, "expected a comparison operator", OP_HELP),
            ("0.05", 0, 4, "expected a comparison operator", OP_HELP),
            (
                "  baseline * 2",
                2,
                8,
                "expected a comparison operator",
                OP_HELP,
            ),
            ("p99 < 5", 0, 3, "expected a comparison operator", OP_HELP),
            (
                "= 5",
                0,
                1,
                "expected a comparison operator, found `=`",
                Some("use == to compare for equality"),
            ),
            (
                " =< 5",
                1,
                2,
                "expected a comparison operator, found `=<`",
                Some("did you mean <=?"),
            ),
            (
                "=> 5",
                0,
                2,
                "expected a comparison operator, found `=>`",
                Some("did you mean >=?"),
            ),
            (
                "<",
                1,
                1,
                "expected a number, `baseline` or `(` after `<`",
                None,
            ),
            (
                "  <=  ",
                6,
                1,
                "expected a number, `baseline` or `(` after `<=`",
                None,
            ),
            (
                "< baselin * 2",
                2,
                7,
                "unknown name `baselin`",
                MEANT_BASELINE,
            ),
            (
                "< Baseline",
                2,
                8,
                "unknown name `Baseline`",
                MEANT_BASELINE,
            ),
            ("< p99", 2, 3, "unknown name `p99`", NOT_A_NAME),
            ("< 2 * value", 6, 5, "unknown name `value`", NOT_A_NAME),
            (
                "< (1 + 2",
                2,
                1,
                "unclosed `(`",
                Some("add a `)` to close it"),
            ),
            (
                "< ((1 + 2)",
                2,
                1,
                "unclosed `(`",
                Some("add a `)` to close it"),
            ),
            (
                "< (1 + 2))",
                9,
                1,
                "unexpected `)`",
                Some("it has no matching `(`"),
            ),
            (
                "< 5)",
                3,
                1,
                "unexpected `)`",
                Some("it has no matching `(`"),
            ),
            (
                "< 5 6",
                4,
                1,
                "unexpected `6` after the end of the condition",
                MISSING_OP,
            ),
            (
                "< 5 <",
                4,
                1,
                "unexpected `<` after the end of the condition",
                ONE_CMP,
            ),
            (
                "< 5 >= 3",
                4,
                2,
                "unexpected `>=` after the end of the condition",
                ONE_CMP,
            ),
            (
                "< 5 = 3",
                4,
                1,
                "unexpected `=` after the end of the condition",
                ONE_CMP,
            ),
            (
                "< (5 6)",
                5,
                1,
                "expected an operator or `)`, found `6`",
                MISSING_OP,
            ),
            (
                "< (5 < 6)",
                5,
                1,
                "expected an operator or `)`, found `<`",
                ONE_CMP,
            ),
            ("< 1.2.3", 2, 5, "invalid number `1.2.3`", NUMBER_HELP),
            ("< 1e", 2, 2, "invalid number `1e`", NUMBER_HELP),
            ("< 1e+", 2, 3, "invalid number `1e+`", NUMBER_HELP),
            ("< 0x10", 2, 4, "invalid number `0x10`", NUMBER_HELP),
            (
                "< .5",
                2,
                2,
                "invalid number `.5`",
                Some("write a digit before the `.`, e.g. 0.5"),
            ),
            (
                "< 5.",
                2,
                2,
                "invalid number `5.`",
                Some("write a digit after the `.`, e.g. 5.0"),
            ),
            (
                "< 2baseline",
                2,
                9,
                "invalid number `2baseline`",
                Some("write `*` between a number and `baseline`, e.g. 2 * baseline"),
            ),
            (
                "< 1e999",
                2,
                5,
                "number `1e999` is too large",
                Some("numbers must be below about 1.8e308"),
            ),
            ("< %", 2, 1, "`%` must follow a number", PERCENT_HELP),
            ("< 5 %", 4, 1, "`%` must follow a number", PERCENT_HELP),
            ("< 5%%", 4, 1, "`%` must follow a number", PERCENT_HELP),
            (
                "< baseline%",
                10,
                1,
                "`%` must follow a number",
                PERCENT_HELP,
            ),
            ("< 5 & 3", 4, 1, "unexpected character `&`", None),
            ("< 5 é", 4, 2, "unexpected character `é`", None),
            ("< 5 \u{7}", 4, 1, "unexpected character `\\u{7}`", None),
            (
                "! 5",
                0,
                1,
                "unexpected character `!`",
                Some("use != to compare for inequality"),
            ),
            (
                "< 5 *",
                5,
                1,
                "expected a number, `baseline` or `(` after `*`",
                None,
            ),
            (
                "< 5 -",
                5,
                1,
                "expected a number, `baseline` or `(` after `-`",
                None,
            ),
            (
                "< -",
                3,
                1,
                "expected a number, `baseline` or `(` after `-`",
                None,
            ),
            (
                "< (",
                3,
                1,
                "expected a number, `baseline` or `(` after `(`",
                None,
            ),
            (
                "< 5 * * 3",
                6,
                1,
                "expected a number, `baseline` or `(` after `*`, found `*`",
                None,
            ),
            (
                "< )",
                2,
                1,
                "expected a number, `baseline` or `(` after `<`, found `)`",
                None,
            ),
            (
                "< ()",
                3,
                1,
                "expected a number, `baseline` or `(` after `(`, found `)`",
                None,
            ),
            (
                "<< 5",
                1,
                1,
                "expected a number, `baseline` or `(` after `<`, found `<`",
                ONE_CMP,
            ),
        ];
        for &(text, offset, len, message, help) in cases {
            let error = parse(text).expect_err(text);
            let expected = ConditionError {
                offset,
                len,
                message: message.to_string(),
                help: help.map(str::to_string),
            };
            assert_eq!(error, expected, "{text:?}");
            assert_eq!(error.to_string(), message, "{text:?}");
        }
    }

    #[test]
    fn nesting_is_capped() {
        let at_limit = format!("< {}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(cond(&at_limit).expr, num(1.0));
        let negations = format!("< {}1", "-".repeat(MAX_DEPTH));
        assert!(parse(&negations).is_ok());

        let too_deep = format!("< {}1", "(".repeat(10_000));
        let error = parse(&too_deep).unwrap_err();
        assert_eq!(error.message, "too deeply nested");
        assert_eq!((error.offset, error.len), (2 + MAX_DEPTH, 1));

        let too_negative = format!("< {}1", "-".repeat(10_000));
        assert_eq!(
            parse(&too_negative).unwrap_err().message,
            "too deeply nested"
        );
    }

    #[test]
    fn length_is_capped() {
        let long = format!("< {}1", "1 + ".repeat(100_000));
        assert_eq!(parse(&long).unwrap_err().message, "condition is too long");
        let fine = format!("< {}1", "1 + ".repeat(400));
        assert_eq!(cond(&fine).threshold(None), Some(401.0));
    }

    fn check_no_panic(text: &str) {
        match parse(text) {
            Ok(parsed) => {
                let shown = parsed.to_string();
                assert_eq!(parse(&shown).as_ref(), Ok(&parsed), "{text:?} -> {shown:?}");
                let _ = parsed.holds(1.0, Some(2.0));
                let _ = parsed.holds(f64::NAN, None);
                let _ = parsed.overlaps(&parsed);
            }
            Err(error) => {
                assert!(!error.message.is_empty(), "{text:?}");
                assert!(
                    error.offset + error.len <= text.len() + 1,
                    "{text:?} {error:?}"
                );
                assert!(
                    text.is_char_boundary(error.offset.min(text.len())),
                    "{text:?}"
                );
                assert!(error.len >= 1 || error.offset == text.len(), "{text:?}");
                if error.offset < text.len() {
                    assert!(text.is_char_boundary(error.offset + error.len), "{text:?}");
                }
            }
        }
    }

    /// Characters conditions are made of, and some that are not.
    const CHARSET: &str = "<>=!()+-*/%. 0123456789eEbaselineé\t";

    use proptest::strategy::Strategy as _;

    fn weird_text(max: usize) -> impl proptest::strategy::Strategy<Value = String> {
        let chars: Vec<char> = CHARSET.chars().collect();
        proptest::collection::vec(proptest::sample::select(chars), 0..max)
            .prop_map(|chars| chars.into_iter().collect())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn weird_input_never_panics(text in weird_text(16)) {
            check_no_panic(&text);
        }

        /// Mostly-valid prefixes exercise the evaluator, not just the error paths.
        #[test]
        fn weird_tails_never_panic(
            prefix in proptest::sample::select(vec!["< ", "<= baseline * ", "> (", "== -"]),
            tail in weird_text(12),
        ) {
            check_no_panic(&format!("{prefix}{tail}"));
        }
    }
}
