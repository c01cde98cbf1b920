// Every refusal a user can hit: the fixtures, mutated one way each (an unsupported operator, a
// branch, a stride, external data, float16, …) or cut short, must be refused with a message
// that names the node and says what to do.
import Foundation
@testable import SRONNX
import Testing

@Suite struct ONNXRefusalTests {
    @Test func anUnsupportedOperatorIsRefusedWithItsTypeAndNodeName() throws {
        var proto = try ONNXFixtures.proto("vgg-bn")
        proto.graph.node[ONNXFixtures.node(proto, "classifier.1")].opType = "Tanh"
        ONNXFixtures.expectRefusal(proto, .unsupportedOperator,
                                   mentions: ["node 'classifier.1' (Tanh)", "'Tanh' is not supported", "Gemm, MatMul"])
        proto = try ONNXFixtures.proto("vgg-bn")
        proto.graph.node[ONNXFixtures.node(proto, "features.0.relu")].domain = "com.microsoft"
        ONNXFixtures.expectRefusal(proto, .unsupportedOperator, mentions: ["node 'features.0.relu' (Relu)", "'com.microsoft'"])
    }

    @Test func truncatedGarbageAndEmptyFilesAreNotONNX() throws {
        let bytes = try ONNXFixtures.bytes("vgg-bn")
        for (data, mention) in [(bytes.prefix(bytes.count / 2), "truncated"),
                                (Data("this is not a model at all, just some text\n".utf8), "not an ONNX model"),
                                (Data(), "empty"),
                                (Data([0x08, 0x08]), "no graph")] {
            do {
                _ = try ONNXImporter.importModel(Data(data), source: "bad.onnx")
                Issue.record("\(mention): imported")
            } catch {
                #expect(error.code == .notONNX, "\(error)")
                #expect(error.message.hasPrefix("bad.onnx: ") && error.message.contains(mention), "\(error)")
            }
        }
    }

    @Test func aMissingFileAndAnOversizedFileAreRefusedBeforeDecoding() throws {
        #expect(throws: ONNXImportError(.io, "no-such.onnx: cannot open the ONNX file: No such file or directory")) {
            try ONNXImporter.importModel(contentsOf: "no-such.onnx")
        }
        do {
            _ = try ONNXImporter.importModel(contentsOf: ONNXFixtures.path("vgg-bn"), options: ONNXImportOptions(maxFileBytes: 1000))
            Issue.record("imported")
        } catch {
            #expect(error.code == .tooLarge && error.message.contains("at most 1000"), "\(error)")
        }
        let proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.expectRefusal(proto, .tooLarge, mentions: ["more than 1000 float32 parameters"],
                                   options: ONNXImportOptions(maxParameterElements: 1000))
        ONNXFixtures.expectRefusal(proto, .tooLarge, mentions: ["nodes; at most 5"], options: ONNXImportOptions(maxNodes: 5))
    }

    @Test func aBranchOrSkipConnectionIsNotAChain() throws {
        // A residual: the output of the first ReLU is added to the second ReLU's output.
        var proto = try ONNXFixtures.proto("vgg-bn")
        let relu = ONNXFixtures.node(proto, "features.1.relu")
        var add = Onnx_NodeProto()
        add.name = "residual"
        add.opType = "Add"
        add.input = [proto.graph.node[relu].output[0], proto.graph.node[ONNXFixtures.node(proto, "features.0.relu")].output[0]]
        add.output = ["sum"]
        proto.graph.node[relu + 1].input[0] = "sum"
        proto.graph.node.insert(add, at: relu + 1)
        ONNXFixtures.expectRefusal(proto, .notAChain, mentions: ["read by 2 nodes", "node 'features.1.conv' (Conv)", "node 'residual' (Add)", "skip connections"])
        // A node beside the path.
        proto = try ONNXFixtures.proto("vgg-bn")
        var stray = Onnx_NodeProto()
        stray.name = "unused"
        stray.opType = "Relu"
        stray.input = ["nothing"]
        stray.output = ["nowhere"]
        proto.graph.node.append(stray)
        ONNXFixtures.expectRefusal(proto, .notAChain, mentions: ["node 'unused' (Relu) is not on the path", "simple chain"])
        // A second graph input.
        proto = try ONNXFixtures.proto("vgg-bn")
        proto.graph.input.append(proto.graph.input[0])
        proto.graph.input[1].name = "mask"
        ONNXFixtures.expectRefusal(proto, .notAChain, mentions: ["2 inputs", "'mask'"])
    }

    @Test func convolutionsAndPoolingTheLayerSetCannotExpressAreRefused() throws {
        var proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "features.3.conv", "strides", ints: [2, 2])
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["node 'features.3.conv' (Conv)", "strides [2, 2]", "3×3 kernel with stride 1"])
        proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "features.3.conv", "pads", ints: [0, 0, 0, 0])
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["pads [0, 0, 0, 0]", "padding 1"])
        proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "features.3.conv", "group", int: 2)
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["group = 2"])
        proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "features.2.pool", "kernel_shape", ints: [3, 3])
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["node 'features.2.pool' (MaxPool)", "kernel [3, 3]", "nn.MaxPool2d(2)"])
        proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "features.6.pool", "ceil_mode", int: 1)
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["ceil_mode = 1 on 7×7"])
        proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "flatten", "axis", int: 2)
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["node 'flatten' (Flatten)", "axis = 2"])
        proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "features.0.conv", "unknown_thing", int: 1)
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["attribute 'unknown_thing'"])
    }

    @Test func aBatchNormalizationThatCannotBeFoldedIsRefused() throws {
        // BN moved after the ReLU: conv → relu → bn.
        var proto = try ONNXFixtures.proto("vgg-bn")
        let (conv, bn, relu) = (ONNXFixtures.node(proto, "features.0.conv"), ONNXFixtures.node(proto, "features.0.bn"),
                                ONNXFixtures.node(proto, "features.0.relu"))
        let (convOut, bnOut, reluOut) = (proto.graph.node[conv].output[0], proto.graph.node[bn].output[0], proto.graph.node[relu].output[0])
        proto.graph.node[relu].input[0] = convOut
        proto.graph.node[relu].output[0] = bnOut
        proto.graph.node[bn].input[0] = bnOut
        proto.graph.node[bn].output[0] = reluOut
        proto.graph.node.swapAt(bn, relu)
        ONNXFixtures.expectRefusal(proto, .unsupportedOperator, mentions: ["node 'features.0.bn' (BatchNormalization) follows node 'features.0.relu' (Relu)", "folded"])
        proto = try ONNXFixtures.proto("vgg-bn")
        ONNXFixtures.setAttribute(&proto, node: "features.0.bn", "training_mode", int: 1)
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["training_mode = 1", "model.eval()"])
    }

    @Test func externalDataAndNonFloat32InitializersAreRefused() throws {
        var proto = try ONNXFixtures.proto("vgg-bn")
        let w = ONNXFixtures.initializer(proto, "features.3.conv.weight")
        proto.graph.initializer[w].dataLocation = .external
        var location = Onnx_StringStringEntryProto()
        location.key = "location"
        location.value = "weights.bin"
        proto.graph.initializer[w].externalData = [location]
        ONNXFixtures.expectRefusal(proto, .externalData, mentions: ["'features.3.conv.weight'", "'weights.bin'", "save_as_external_data=False"])
        proto = try ONNXFixtures.proto("vgg-bn")
        proto.graph.initializer[w].dataType = Int32(Onnx_TensorProto.DataType.float16.rawValue)
        ONNXFixtures.expectRefusal(proto, .unsupportedDataType, mentions: ["'features.3.conv.weight'", "node 'features.3.conv' (Conv)", "FLOAT16", "model.float()"])
        proto = try ONNXFixtures.proto("vgg-bn")
        proto.graph.initializer[w].rawData = proto.graph.initializer[w].rawData.dropLast(4)
        ONNXFixtures.expectRefusal(proto, .badTensor, mentions: ["'features.3.conv.weight'", "raw_data holds"])
        proto = try ONNXFixtures.proto("vgg-bn")
        proto.graph.initializer[w].dims = [1 << 20, 1 << 20, 3, 3]
        ONNXFixtures.expectRefusal(proto, .tooLarge, mentions: ["'features.3.conv.weight'", "more than"])
        proto = try ONNXFixtures.proto("vgg-bn")
        var input = proto.graph.input[0]
        input.type.tensorType.elemType = Int32(Onnx_TensorProto.DataType.double.rawValue)
        proto.graph.input[0] = input
        ONNXFixtures.expectRefusal(proto, .unsupportedDataType, mentions: ["graph input 'input'", "DOUBLE"])
    }

    @Test func wrongShapesAreRefused() throws {
        // An image size that is symbolic.
        var proto = try ONNXFixtures.proto("vgg-bn")
        var input = proto.graph.input[0]
        input.type.tensorType.shape.dim[2].dimParam = "H"
        proto.graph.input[0] = input
        ONNXFixtures.expectRefusal(proto, .shapeMismatch, mentions: ["the symbol 'H' at dimension 2"])
        // An input of 2^24 × 2^24 × 2^24 per sample (its element count overflows Int).
        proto = try ONNXFixtures.proto("vgg-bn")
        input = proto.graph.input[0]
        for axis in 1...3 { input.type.tensorType.shape.dim[axis].dimValue = 1 << 24 }
        proto.graph.input[0] = input
        ONNXFixtures.expectRefusal(proto, .tooLarge, mentions: ["more than 134217728 elements"])
        // A declared output that disagrees with the nodes.
        proto = try ONNXFixtures.proto("vgg-bn")
        var output = proto.graph.output[0]
        output.type.tensorType.shape.dim[1].dimValue = 12
        proto.graph.output[0] = output
        ONNXFixtures.expectRefusal(proto, .shapeMismatch, mentions: ["[?, 12]", "[N, 10]"])
        // Gemm straight on images (Flatten removed).
        proto = try ONNXFixtures.proto("vgg-bn")
        let flatten = ONNXFixtures.node(proto, "flatten")
        proto.graph.node[flatten].opType = "Identity"
        proto.graph.node[flatten].attribute = []
        ONNXFixtures.expectRefusal(proto, .shapeMismatch, mentions: ["node 'classifier.0' (Gemm)", "[N, 8, 3, 3]", "add Flatten"])
        // A reshape that is not to [batch, features].
        proto = try ONNXFixtures.proto("mlp-reshape")
        let shape = ONNXFixtures.initializer(proto, "shape")
        proto.graph.initializer[shape].rawData = Data([8, 0, 0, 0, 0, 0, 0, 0, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        ONNXFixtures.expectRefusal(proto, .unsupportedAttribute, mentions: ["node 'reshape' (Reshape)", "[8, -4]", "torch.flatten(x, 1)"])
    }

    @Test func anInnerSoftmaxOrAWideSigmoidIsRefused() throws {
        var proto = try ONNXFixtures.proto("vgg-bn")
        proto.graph.node[ONNXFixtures.node(proto, "classifier.1")].opType = "Softmax"
        ONNXFixtures.expectRefusal(proto, .unsupportedOperator, mentions: ["node 'classifier.1' (Softmax)", "only as the last node"])
        proto = try ONNXFixtures.proto("mlp-reshape")
        proto.graph.node[ONNXFixtures.node(proto, "head")].opType = "Sigmoid"
        proto.graph.node[ONNXFixtures.node(proto, "head")].attribute = []
        ONNXFixtures.expectRefusal(proto, .unsupportedOperator, mentions: ["Sigmoid over 5 outputs"])
    }
}
