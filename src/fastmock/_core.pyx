# cython: language_level=3
# The compiled core of fastmock: one module built from the files in core/, so cdef calls between the
# stages are direct C calls. Declarations are in core/*.pxd (one per concept, included by _core.pxd).
# A request's path: parser -> server (route) -> connection (handler) -> writer -> transport.

cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Realloc
from libc.math cimport ceil
from libc.string cimport memchr, memcmp, memcpy, memmove, memset
from posix.strings cimport strncasecmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

import asyncio
import collections
import errno
import ipaddress
import json
import logging
import mmap
import resource
import ssl
import struct
import time
from socket import SOL_SOCKET, SO_LINGER
from email.utils import formatdate
from http import HTTPStatus

from fastmock.errors import LocalProtocolError, RemoteProtocolError

include "core/clock.pyx"
include "core/parser.pyx"
include "core/writer.pyx"
include "core/random.pyx"
include "core/faults.pyx"
include "core/requestlog.pyx"
include "core/server.pyx"
include "core/connection.pyx"
include "core/fleet.pyx"
include "core/proxy.pyx"
include "core/histogram.pyx"
include "core/client.pyx"
include "core/websocket.pyx"
include "core/tls.pyx"
