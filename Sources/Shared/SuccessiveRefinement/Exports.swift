// The SuccessiveRefinement product in one import, for embedders and the fuzz package. The
// executables import the individual targets instead, so each links only what it uses.
@_exported import SRAMQP
@_exported import SRAggregation
@_exported import SRCoding
@_exported import SRCore
@_exported import SRFormats
@_exported import SRKernels
@_exported import SRNeural
@_exported import SRONNX
@_exported import SRRoleSupport
@_exported import SRProtocol
@_exported import SRAggregatorService
@_exported import SRSubmission
@_exported import SRWorker
@_exported import SRStore
@_exported import SRTraining
@_exported import SRTransport
