"""Read atomic structures from files: ænet XSF natively, everything else through ASE.

All readers return :class:`Structure` objects in Å, eV and eV/Å and raise
:class:`DataError` naming the file (and the line, where it is known) for any
input that cannot be used.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ase.io
import ase.io.formats
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from aenet_exp.data.errors import DataError
from aenet_exp.data.structure import Structure

Source = str | Path | list[str | Path] | tuple[str | Path, ...]

_ENERGY_COMMENT = re.compile(r"^#\s*total\s+energy\s*=\s*(\S+)", re.IGNORECASE)
_LINE_IN_MESSAGE = re.compile(r"\bline\s+(\d+)", re.IGNORECASE)
_QUOTED = re.compile(r"'([^'\s]+)'")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MAX_FILE_BYTES = 2 * 2**30  # a structure file (or archive member) larger than this is refused, not read
_ATOM_COLUMNS = "expected 7 columns 'symbol x y z fx fy fz' or 4 columns 'symbol x y z'"


def read_structures(source: Source) -> list[Structure]:
    """Read every structure in ``source``.

    Args:
        source: a file, a directory (its non-hidden files, sorted by name, not
            recursive), a glob pattern (matches sorted), or a list/tuple of these.
            ``.xsf`` files are read with :func:`read_xsf`, all other files with
            ASE (every frame of a trajectory).

    Returns:
        The structures in file order, then frame order.

    Raises:
        DataError: a source matches no file, or a file is malformed.
    """
    return [s for path in _resolve(source) for s in _read_file(path)]


def read_xsf(path: str | Path) -> Structure:
    """Read one structure from an ænet XSF file.

    The format is an optional ``# total energy = <E> eV`` comment (other ``#``
    lines are ignored), then either ``CRYSTAL`` / ``PRIMVEC`` (3 lattice rows,
    Å) / ``PRIMCOORD`` (``N 1``, then N atom rows) for a periodic structure, or
    ``ATOMS`` followed by atom rows for an isolated one. Atom rows are
    ``symbol x y z`` (Å) or ``symbol x y z fx fy fz`` (eV/Å); the symbol may be
    an atomic number.

    Raises:
        DataError: naming the file and line, for any malformed or non-finite input.
    """
    return parse_xsf(_read_text(str(path)), str(path))


def parse_xsf(text: str, path: str) -> Structure:
    """Parse the text of an ænet XSF file; ``path`` names it in errors and in ``Structure.source``."""
    lines = _Lines.from_text(path, text)
    energy = _parse_energy(path, lines.comments)
    keyword = lines.take("'CRYSTAL' or 'ATOMS'")
    if keyword.text.upper() == "ATOMS":
        cell = None
        atoms = lines.rest()
        if not atoms:
            raise DataError(path, "expected atom rows after ATOMS", keyword.number)
    elif keyword.text.upper() == "CRYSTAL":
        cell = _parse_lattice(lines)
        atoms = _parse_primcoord(lines)
    else:
        raise DataError(path, f"expected 'CRYSTAL' or 'ATOMS', got {keyword.text!r}", keyword.number)
    species, positions, forces = _parse_atom_rows(path, atoms)
    return Structure(
        species=species,
        positions=positions,
        cell=cell,
        pbc=cell is not None,
        energy=energy,
        forces=forces,
        source=path,
    )


# ---------------------------------------------------------------- sources


SHARED_PREFIX = "../shared/"  # where the data options tio2 and ethanol read (the shared folder beside a checkout)


def resolve_sources(source: Source) -> list[Path]:
    """The files ``source`` names, in order (nothing is read); DataError naming what matches nothing."""
    return _resolve(source)


def _resolve(source: Source) -> list[Path]:
    """Expand ``source`` into the list of files it names, in order."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise DataError("[]", "no sources given")
        return [path for item in source for path in _resolve(item)]
    if isinstance(source, str) and source.startswith(SHARED_PREFIX) and not Path(source).exists():
        raise DataError(
            source,
            f"not found: this data option reads the shared data folder {SHARED_PREFIX!r}, which is absent "
            f"from {Path.cwd()}; run from the project root next to it, or give data.path=<your files>",
        )
    path = Path(source)
    if path.exists():
        files = _expand_existing(path)
    else:
        files = [f for match in sorted(glob.glob(str(source))) for f in _expand_existing(Path(match))]
    if not files:
        what = "directory contains no files" if path.is_dir() else "no such file, directory or glob match"
        raise DataError(source, what)
    return files


def _expand_existing(path: Path) -> list[Path]:
    """A file as itself; a directory as its non-hidden structure files, sorted by name.

    In a directory, files whose name shows no structure format (``LICENSE``,
    ``README.md``) are passed over; a file named explicitly is always read.
    """
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _is_structure_file(p.name)
        )
    return [path]


def _is_structure_file(name: str) -> bool:
    """Whether a file name shows a format we read (XSF, an archive, or one ASE knows by name)."""
    lowered = name.lower()
    if lowered.endswith(_ARCHIVE_SUFFIXES) or lowered.endswith(".xsf"):
        return True
    if lowered.endswith((".md", ".txt", ".rst")):
        return False
    try:
        ase.io.formats.filetype(name, read=False)
    except Exception:  # ASE raises several types for names it cannot place
        return False
    return True


def _read_file(path: Path) -> list[Structure]:
    """Dispatch on the name: archives, ``.xsf`` to :func:`read_xsf`, anything else to ASE."""
    check_regular_file(path)
    name = path.name.lower()
    if name.endswith(_ARCHIVE_SUFFIXES):
        return _read_archive(path)
    if name.endswith(".xsf"):
        return [read_xsf(path)]
    return _read_with_ase(path)


def _read_archive(path: Path) -> list[Structure]:
    """Every structure file in a tar archive (``.tar``, ``.tar.gz``, ``.tgz``), in member-name order.

    Each structure's source is ``<archive>:<member>``.
    """
    try:
        with tarfile.open(path) as archive:  # members read in archive order: a compressed stream never seeks back
            contents = {
                m.name: _member_bytes(archive, m, path)
                for m in archive
                if m.isfile() and _is_structure_file(Path(m.name).name)
            }
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(path, f"cannot read archive: {exc}") from exc
    if not contents:
        raise DataError(path, "archive contains no structure files")
    with tempfile.TemporaryDirectory() as scratch:
        return [s for name in sorted(contents) for s in _read_member(name, contents[name], path, Path(scratch))]


def _member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    """A member's content, at most :data:`MAX_FILE_BYTES`."""
    if member.size > MAX_FILE_BYTES:
        raise DataError(f"{path}:{member.name}", f"{member.size} bytes, more than the {MAX_FILE_BYTES} a structure file may have")
    return archive.extractfile(member).read()


def _read_member(name: str, raw: bytes, path: Path, scratch: Path) -> list[Structure]:
    """One archive member's bytes: XSF parsed from memory, other formats through ASE from a scratch copy."""
    source = f"{path}:{name}"
    if name.lower().endswith(".xsf"):
        return [parse_xsf(_decode(raw, source), source)]
    copy = scratch / Path(name).name
    copy.write_bytes(raw)
    return [dataclasses.replace(s, source=source) for s in _read_with_ase(copy)]


# ---------------------------------------------------------------- XSF


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based line number in the file
    text: str  # stripped content


@dataclass
class _Lines:
    """The non-blank, non-comment lines of a file, consumed front to back."""

    path: str
    body: list[_Line]
    comments: list[_Line]
    n_lines: int
    pos: int = 0

    @classmethod
    def from_text(cls, path: str, text: str) -> _Lines:
        numbered = [_Line(i, t.strip()) for i, t in enumerate(text.splitlines(), start=1) if t.strip()]
        if not numbered:
            raise DataError(path, "empty file, expected an XSF structure")
        body = [line for line in numbered if not line.text.startswith("#")]
        comments = [line for line in numbered if line.text.startswith("#")]
        return cls(path, body, comments, n_lines=len(text.splitlines()))

    def take(self, expected: str) -> _Line:
        """The next line; at the end of the file, a DataError saying what was expected."""
        if self.pos >= len(self.body):
            raise DataError(self.path, f"unexpected end of file, expected {expected}", self.n_lines)
        line = self.body[self.pos]
        self.pos += 1
        return line

    def rest(self) -> list[_Line]:
        lines, self.pos = self.body[self.pos :], len(self.body)
        return lines


def check_regular_file(path: str | Path) -> None:
    """DataError unless ``path`` is a regular file of at most :data:`MAX_FILE_BYTES` (a FIFO would hang the
    reader, a link to ``/dev/zero`` would read until memory runs out)."""
    try:
        status = os.stat(path)
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror}") from exc
    if not stat.S_ISREG(status.st_mode):
        raise DataError(path, "not a regular file (a pipe, device or socket); structure files are read from regular files")
    if status.st_size > MAX_FILE_BYTES:
        raise DataError(path, f"{status.st_size} bytes, more than the {MAX_FILE_BYTES} a structure file may have; "
                              "split it, or stream it into a database with build-db")


def _read_text(path: str) -> str:
    """The file's text; DataError if it is missing, not a regular file, too large, unreadable or binary."""
    check_regular_file(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror}") from exc
    return _decode(raw, path)


def _decode(raw: bytes, path: str) -> str:
    """UTF-8 text of a file's bytes; DataError for binary content."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a text file (undecodable byte at offset {exc.start})") from exc
    if "\x00" in text:
        raise DataError(path, "not a text file (contains NUL bytes)")
    return text


def _parse_energy(path: str, comments: list[_Line]) -> float | None:
    """Total energy in eV from a ``# total energy = <E> eV`` comment, or None."""
    matches = [(line, m.group(1)) for line in comments if (m := _ENERGY_COMMENT.match(line.text))]
    if not matches:
        return None
    if len(matches) > 1:
        first, second = matches[0][0].number, matches[1][0].number
        raise DataError(path, f"more than one 'total energy' comment (first on line {first})", second)
    line, token = matches[0]
    return _parse_floats(path, line.number, [token], "energy")[0]


def _parse_floats(path: str, number: int, tokens: list[str], what: str) -> list[float]:
    """Parse finite floats; DataError naming the line for a non-number or NaN/inf."""
    values = []
    for token in tokens:
        try:
            values.append(float(token))
        except ValueError:
            raise DataError(path, f"could not parse {token!r} as a number in {what}", number) from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(path, f"NaN/inf in {what}", number)
    return values


def _parse_lattice(lines: _Lines) -> np.ndarray:
    """The ``PRIMVEC`` block: lattice vectors as rows in Å, ``(3, 3)``."""
    header = lines.take("'PRIMVEC'")
    if header.text.upper() != "PRIMVEC":
        raise DataError(lines.path, f"expected 'PRIMVEC' after CRYSTAL, got {header.text!r}", header.number)
    expected = f"3 lattice vector rows after PRIMVEC (line {header.number})"
    rows = []
    for _ in range(3):
        line = lines.take(expected)
        tokens = line.text.split()
        if len(tokens) != 3:
            raise DataError(lines.path, f"expected {expected}, got {line.text!r}", line.number)
        rows.append(_parse_floats(lines.path, line.number, tokens, "lattice vectors"))
    return np.array(rows)


def _parse_primcoord(lines: _Lines) -> list[_Line]:
    """The ``PRIMCOORD`` block: checks the ``N 1`` header and returns the N atom rows."""
    header = lines.take("'PRIMCOORD'")
    if header.text.upper() != "PRIMCOORD":
        message = f"expected 'PRIMCOORD' after the lattice vectors, got {header.text!r}"
        raise DataError(lines.path, message, header.number)
    count = lines.take("the atom count line 'N 1' after PRIMCOORD")
    n_atoms = _parse_count(lines.path, count)
    atoms = lines.rest()
    if len(atoms) != n_atoms:
        raise DataError(lines.path, f"expected {n_atoms} atoms after PRIMCOORD, found {len(atoms)}", count.number)
    return atoms


def _parse_count(path: str, line: _Line) -> int:
    """The atom count N from a PRIMCOORD ``N 1`` line."""
    tokens = line.text.split()
    if len(tokens) in (1, 2) and tokens[0].isdigit() and int(tokens[0]) > 0 and tokens[1:] in ([], ["1"]):
        return int(tokens[0])
    raise DataError(path, f"expected the atom count line 'N 1' after PRIMCOORD, got {line.text!r}", line.number)


def _parse_atom_rows(path: str, rows: list[_Line]) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Species, positions ``(n, 3)`` in Å and forces ``(n, 3)`` in eV/Å (or None)."""
    width = len(rows[0].text.split())
    species, numbers = [], []
    for row in rows:
        tokens = row.text.split()
        if len(tokens) not in (4, 7):
            raise DataError(path, f"{_ATOM_COLUMNS}, got {len(tokens)}", row.number)
        if len(tokens) != width:
            mixed = f"line {rows[0].number} has {width} columns, this one {len(tokens)}"
            raise DataError(path, f"atom rows must all have forces or none: {mixed}", row.number)
        species.append(_parse_symbol(path, row.number, tokens[0]))
        positions = _parse_floats(path, row.number, tokens[1:4], "positions")
        numbers.append(positions + _parse_floats(path, row.number, tokens[4:], "forces"))
    table = np.array(numbers)
    return species, table[:, :3], (table[:, 3:] if width == 7 else None)


def _parse_symbol(path: str, number: int, token: str) -> str:
    """A chemical symbol from a symbol or an atomic number."""
    if token.isdigit() and 1 <= int(token) < len(chemical_symbols):
        return chemical_symbols[int(token)]
    if token in chemical_symbols[1:]:
        return token
    raise DataError(path, f"unknown element {token!r}", number)


# ---------------------------------------------------------------- ASE


def _read_with_ase(path: Path) -> list[Structure]:
    """Every frame ASE finds in ``path``, as structures with ``frame`` set."""
    frames = _ase_frames(path)
    if not frames:
        raise DataError(path, "ASE found no structures in the file")
    return [_atoms_to_structure(atoms, path, i, len(frames)) for i, atoms in enumerate(frames)]


def _ase_frames(path: Path) -> list[Atoms]:
    """All frames via ``ase.io.iread``; any ASE failure becomes a DataError."""
    frames: list[Atoms] = []
    try:
        frames.extend(ase.io.iread(path, index=":"))
    except Exception as exc:  # ASE raises many unrelated types for bad input
        # Frames are yielded one by one, so a failure after k frames is in frame k;
        # with none yielded it may also be in a format's up-front index scan.
        where = f"frame {len(frames)}: " if frames else ""
        message = f"{where}ASE could not read the file: {type(exc).__name__}: {exc}"
        raise DataError(path, message, _ase_error_line(path, exc)) from exc
    return frames


def _ase_error_line(path: Path, exc: Exception) -> int | None:
    """Best guess at the 1-based line an ASE error refers to, or None.

    ASE rarely reports lines: use an exception's ``lineno`` or a "line N" in the
    message, else the first line containing a quoted token from the message
    (e.g. ``could not convert string to float: 'abc'``, or ``KeyError('Xx')``).
    """
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    if match := _LINE_IN_MESSAGE.search(str(exc)):
        return int(match.group(1))
    tokens = _QUOTED.findall(str(exc))
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        tokens.append(exc.args[0])
    tokens = [t.removesuffix("\\n") for t in tokens]
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if any(t in line.split() for t in tokens):
            return number
    return None


def _atoms_to_structure(atoms: Atoms, path: Path, frame: int, n_frames: int) -> Structure:
    """Convert one ASE frame; a periodic cell is kept only when some pbc is set."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    try:
        return Structure(
            species=atoms.get_chemical_symbols(),
            positions=atoms.get_positions(),
            cell=atoms.cell.array.copy() if pbc.any() else None,
            pbc=pbc,
            energy=_ase_energy(atoms),
            forces=_ase_forces(atoms),
            source=str(path),
            frame=frame,
        )
    except DataError as exc:
        if frame == 0 and n_frames > 1:  # Structure names every frame but 0
            raise DataError(path, f"frame 0: {exc.message}", exc.line) from None
        raise


def _calc_result(atoms: Atoms, name: str) -> float | np.ndarray | None:
    """A stored calculator result, or None.

    Read from ``calc.results`` rather than ``atoms.get_potential_energy()``: the
    getters compare the atoms with the calculator's copy, and NaN positions make
    that comparison fail, which would hide the real problem.
    """
    return None if atoms.calc is None else atoms.calc.results.get(name)


def _ase_energy(atoms: Atoms) -> float | None:
    """Potential energy in eV from the attached calculator or ``info['energy']``."""
    energy = _calc_result(atoms, "energy")
    return atoms.info.get("energy") if energy is None else energy


def _ase_forces(atoms: Atoms) -> np.ndarray | None:
    """Forces in eV/Å, ``(n_atoms, 3)``, from the calculator or ``arrays['forces']``."""
    forces = _calc_result(atoms, "forces")
    return atoms.arrays.get("forces") if forces is None else forces
