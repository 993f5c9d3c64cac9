# The contract of the compiled core: one .pxd per concept, each beside its implementation in core/.
# _core.pyx includes the implementations (one module, so cdef calls between them are C calls).

include "core/parser.pxd"
include "core/writer.pxd"
include "core/random.pxd"
include "core/faults.pxd"
include "core/requestlog.pxd"
include "core/server.pxd"
include "core/connection.pxd"
include "core/fleet.pxd"
include "core/proxy.pxd"
include "core/histogram.pxd"
include "core/tls.pxd"
include "core/client.pxd"
include "core/websocket.pxd"
