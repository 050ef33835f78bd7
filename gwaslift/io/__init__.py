"""Input and output: PLINK filesets (read lazily, write atomically), phenotype and covariate files."""

from .packed import CODE_TO_DOSAGE, decode_dosage, encode_dosage, unpack_codes
from .plink import BedSource, Genotypes, read_bim, read_fam, read_plink
from .writer import PlinkWriter, write_plink

__all__ = [
    "BedSource", "CODE_TO_DOSAGE", "Genotypes", "PlinkWriter", "decode_dosage", "encode_dosage",
    "read_bim", "read_fam", "read_plink", "unpack_codes", "write_plink",
]
