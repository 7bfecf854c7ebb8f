using System.Buffers;
using System.Text.Json;
using ProxySelection.Wire;

namespace ProxySelection.Wire.Json;

/// <summary>
/// Writes decoded packets as JSON lines to a stream (the stream stays the caller's). Field names follow
/// tests/vectors/README.md: top-level names as in the vector records, option values as tshark's fields
/// (MPTCP: <c>tcp.options.mptcp.*</c> without the prefix).
/// </summary>
public sealed class JsonLines : IDisposable
{
    private readonly Stream _stream;
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);
    private readonly Utf8JsonWriter _writer;

    public JsonLines(Stream stream)
    {
        _stream = stream;
        _writer = new Utf8JsonWriter(_buffer, new JsonWriterOptions { Indented = false });
    }

    /// <summary>Writes one packet object, or an error object when the packet does not parse.</summary>
    public void WritePacket(ReadOnlySpan<byte> packet, int? frame, long? fileOffset = null)
    {
        _writer.WriteStartObject();
        if (frame is { } f)
        {
            _writer.WriteNumber("frame", f);
        }

        // The object is built in memory first: a packet that fails halfway prints an error object instead.
        var error = PacketJson.TryWrite(_writer, packet, out int errorOffset);
        if (error != WireError.None)
        {
            _writer.Reset();
            _buffer.ResetWrittenCount();
            WriteError(frame, fileOffset, error.ToString(), errorOffset, WireErrorText.Describe(error));
            return;
        }

        _writer.WriteEndObject();
        EndLine();
    }

    /// <summary>An error object: <c>{"frame":..,"file_offset":..,"error":"BadOptionLength","offset":54,"reason":"..."}</c>.</summary>
    public void WriteError(int? frame, long? fileOffset, string error, int? offset, string reason)
    {
        _writer.WriteStartObject();
        if (frame is { } f)
        {
            _writer.WriteNumber("frame", f);
        }

        if (fileOffset is { } fo)
        {
            _writer.WriteNumber("file_offset", fo);
        }

        _writer.WriteString("error", error);
        if (offset is { } o)
        {
            _writer.WriteNumber("offset", o);
        }

        _writer.WriteString("reason", reason);
        _writer.WriteEndObject();
        EndLine();
    }

    public void Dispose()
    {
        _writer.Dispose();
        _stream.Flush();
    }

    private void EndLine()
    {
        _writer.Flush();
        _stream.Write(_buffer.WrittenSpan);
        _stream.WriteByte((byte)'\n');
        _buffer.ResetWrittenCount();
        _writer.Reset();
    }
}
