"""`convnet.config` for users' imports: the cfg reader and value parsers live in
convnet/engine/config.py now. New code imports from convnet.engine.config."""
from .engine.config import (SCHEDULE_ARGS, ConfigError, Entry, Schedule, Section, parse_bool,
                            parse_float, parse_int, parse_neuron, parse_schedule, parse_str,
                            read_cfg)

__all__ = ["SCHEDULE_ARGS", "ConfigError", "Entry", "Schedule", "Section", "parse_bool",
           "parse_float", "parse_int", "parse_neuron", "parse_schedule", "parse_str", "read_cfg"]
