using System.Buffers.Binary;
using System.Text;

namespace ProxySelection.IntegrationTests.Telemetry;

/// <summary>One span as decoded from an OTLP ExportTraceServiceRequest (opentelemetry/proto/trace/v1/trace.proto).</summary>
internal sealed record OtlpSpan(
    string TraceId,
    string SpanId,
    string ParentSpanId,
    string Name,
    int Kind,
    string Scope,
    IReadOnlyDictionary<string, object?> Attributes,
    IReadOnlyList<OtlpEvent> Events,
    int StatusCode,
    IReadOnlyDictionary<string, object?> Resource);

internal sealed record OtlpEvent(string Name, IReadOnlyDictionary<string, object?> Attributes);

/// <summary>Malformed protobuf in a request the receiver got.</summary>
internal sealed class OtlpFormatException(string message) : Exception(message);

/// <summary>
/// A protobuf wire-format reader for the fields of the OTLP trace request this project checks (OpenTelemetry.Proto is
/// not available here). Field numbers from trace.proto, common.proto and resource.proto (v1); fields not listed are
/// skipped by wire type, as a protobuf parser must.
/// </summary>
internal static class OtlpTraceReader
{
    public static List<OtlpSpan> ReadExportTraceServiceRequest(ReadOnlySpan<byte> request)
    {
        var spans = new List<OtlpSpan>();
        var reader = new ProtoReader(request);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2)
            {
                ReadResourceSpans(reader.Bytes(), spans);
            }
            else
            {
                reader.Skip(wire);
            }
        }

        return spans;
    }

    private static void ReadResourceSpans(ReadOnlySpan<byte> bytes, List<OtlpSpan> spans)
    {
        var resource = new Dictionary<string, object?>();
        var scopes = new List<byte[]>();
        var reader = new ProtoReader(bytes);
        while (reader.Next(out int field, out int wire))
        {
            switch (field, wire)
            {
                case (1, 2):
                    // Resource { repeated KeyValue attributes = 1; }
                    var r = new ProtoReader(reader.Bytes());
                    while (r.Next(out int f, out int w))
                    {
                        if (f == 1 && w == 2)
                        {
                            ReadKeyValue(r.Bytes(), resource);
                        }
                        else
                        {
                            r.Skip(w);
                        }
                    }

                    break;
                case (2, 2):
                    scopes.Add(reader.Bytes().ToArray());
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        foreach (var scope in scopes)
        {
            ReadScopeSpans(scope, resource, spans);
        }
    }

    private static void ReadScopeSpans(ReadOnlySpan<byte> bytes, Dictionary<string, object?> resource, List<OtlpSpan> spans)
    {
        string scope = "";
        var raw = new List<byte[]>();
        var reader = new ProtoReader(bytes);
        while (reader.Next(out int field, out int wire))
        {
            switch (field, wire)
            {
                case (1, 2):
                    // InstrumentationScope { string name = 1; string version = 2; }
                    var s = new ProtoReader(reader.Bytes());
                    while (s.Next(out int f, out int w))
                    {
                        if (f == 1 && w == 2)
                        {
                            scope = s.String();
                        }
                        else
                        {
                            s.Skip(w);
                        }
                    }

                    break;
                case (2, 2):
                    raw.Add(reader.Bytes().ToArray());
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        spans.AddRange(raw.Select(span => ReadSpan(span, scope, resource)));
    }

    private static OtlpSpan ReadSpan(ReadOnlySpan<byte> bytes, string scope, Dictionary<string, object?> resource)
    {
        string traceId = "", spanId = "", parent = "", name = "";
        int kind = 0, status = 0;
        var attributes = new Dictionary<string, object?>();
        var events = new List<OtlpEvent>();
        var reader = new ProtoReader(bytes);
        while (reader.Next(out int field, out int wire))
        {
            switch (field, wire)
            {
                case (1, 2):
                    traceId = Convert.ToHexStringLower(reader.Bytes());
                    break;
                case (2, 2):
                    spanId = Convert.ToHexStringLower(reader.Bytes());
                    break;
                case (4, 2):
                    parent = Convert.ToHexStringLower(reader.Bytes());
                    break;
                case (5, 2):
                    name = reader.String();
                    break;
                case (6, 0):
                    kind = (int)reader.Varint();
                    break;
                case (9, 2):
                    ReadKeyValue(reader.Bytes(), attributes);
                    break;
                case (11, 2):
                    events.Add(ReadEvent(reader.Bytes()));
                    break;
                case (15, 2):
                    // Status { string message = 2; StatusCode code = 3; }
                    var st = new ProtoReader(reader.Bytes());
                    while (st.Next(out int f, out int w))
                    {
                        if (f == 3 && w == 0)
                        {
                            status = (int)st.Varint();
                        }
                        else
                        {
                            st.Skip(w);
                        }
                    }

                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return new OtlpSpan(traceId, spanId, parent, name, kind, scope, attributes, events, status, resource);
    }

    private static OtlpEvent ReadEvent(ReadOnlySpan<byte> bytes)
    {
        string name = "";
        var attributes = new Dictionary<string, object?>();
        var reader = new ProtoReader(bytes);
        while (reader.Next(out int field, out int wire))
        {
            switch (field, wire)
            {
                case (2, 2):
                    name = reader.String();
                    break;
                case (3, 2):
                    ReadKeyValue(reader.Bytes(), attributes);
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return new OtlpEvent(name, attributes);
    }

    /// <summary>KeyValue { string key = 1; AnyValue value = 2; }, AnyValue's scalar cases.</summary>
    private static void ReadKeyValue(ReadOnlySpan<byte> bytes, Dictionary<string, object?> into)
    {
        string key = "";
        object? value = null;
        var reader = new ProtoReader(bytes);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2)
            {
                key = reader.String();
            }
            else if (field == 2 && wire == 2)
            {
                var any = new ProtoReader(reader.Bytes());
                while (any.Next(out int f, out int w))
                {
                    value = (f, w) switch
                    {
                        (1, 2) => any.String(),
                        (2, 0) => any.Varint() != 0,
                        (3, 0) => (long)any.Varint(),
                        (4, 1) => BitConverter.Int64BitsToDouble((long)any.Fixed64()),
                        _ => Skipped(ref any, w),
                    };
                }
            }
            else
            {
                reader.Skip(wire);
            }
        }

        into[key] = value;
    }

    private static object? Skipped(ref ProtoReader reader, int wire)
    {
        reader.Skip(wire);
        return null;
    }

    /// <summary>Protobuf wire format: tag varints, varints, fixed 32/64, length-delimited; malformed input throws <see cref="OtlpFormatException"/>.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> bytes)
    {
        private ReadOnlySpan<byte> rest = bytes;

        public bool Next(out int field, out int wire)
        {
            field = 0;
            wire = 0;
            if (rest.IsEmpty)
            {
                return false;
            }

            ulong tag = Varint();
            field = (int)(tag >> 3);
            wire = (int)(tag & 7);
            if (field == 0)
            {
                throw new OtlpFormatException("field number 0");
            }

            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (rest.IsEmpty)
                {
                    throw new OtlpFormatException("truncated varint");
                }

                byte b = rest[0];
                rest = rest[1..];
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    return value;
                }
            }

            throw new OtlpFormatException("varint longer than 10 bytes");
        }

        public ulong Fixed64()
        {
            var value = BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
            return value;
        }

        public ReadOnlySpan<byte> Bytes()
        {
            ulong length = Varint();
            if (length > (ulong)rest.Length)
            {
                throw new OtlpFormatException($"length {length} past the end ({rest.Length} left)");
            }

            return Take((int)length);
        }

        public string String() => Encoding.UTF8.GetString(Bytes());

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0:
                    Varint();
                    break;
                case 1:
                    Take(8);
                    break;
                case 2:
                    Bytes();
                    break;
                case 5:
                    Take(4);
                    break;
                default:
                    throw new OtlpFormatException($"wire type {wire}");
            }
        }

        private ReadOnlySpan<byte> Take(int count)
        {
            if (count > rest.Length)
            {
                throw new OtlpFormatException("truncated field");
            }

            var taken = rest[..count];
            rest = rest[count..];
            return taken;
        }
    }
}
