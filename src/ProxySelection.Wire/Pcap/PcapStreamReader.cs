namespace ProxySelection.Wire.Pcap;

/// <summary>
/// Reads a classic pcap file record by record from a stream, so a capture of any size needs one frame of memory.
/// The record buffer belongs to the reader: a <see cref="PcapRecord"/>'s spans are valid until the next
/// <see cref="ReadNext"/> or <see cref="Dispose"/>. The stream belongs to the caller unless <c>ownsStream</c> is set.
/// I/O errors of the stream propagate as they are (<see cref="IOException"/>); malformed content yields a status.
/// </summary>
public sealed class PcapStreamReader : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _ownsStream;
    private byte[] _buffer = new byte[2048];
    private long _offset = PcapFileHeader.Length;
    private int _number;
    private PcapStatus _stopped = PcapStatus.Ok;

    private PcapStreamReader(Stream stream, PcapFileHeader header, bool ownsStream)
    {
        _stream = stream;
        Header = header;
        _ownsStream = ownsStream;
    }

    public PcapFileHeader Header { get; }

    public PcapLinkType LinkType => Header.LinkType;

    /// <summary>Byte offset of the next record header in the file.</summary>
    public long Offset => _offset;

    /// <summary>Reads the global header. On failure <paramref name="reader"/> is null (and an owned stream is disposed).</summary>
    public static PcapStatus TryOpen(Stream stream, out PcapStreamReader? reader, bool ownsStream = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        reader = null;
        Span<byte> header = stackalloc byte[PcapFileHeader.Length];
        int read = stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
        var status = PcapFileHeader.TryParse(header[..read], out var parsed);
        if (status != PcapStatus.Ok)
        {
            if (ownsStream)
            {
                stream.Dispose();
            }

            return status;
        }

        reader = new PcapStreamReader(stream, parsed, ownsStream);
        return PcapStatus.Ok;
    }

    /// <summary>
    /// Reads the next record; same statuses as <see cref="PcapReader.ReadNext"/>, and after anything but
    /// <see cref="PcapStatus.Ok"/> every later call returns that status again.
    /// </summary>
    public PcapStatus ReadNext(out PcapRecord record)
    {
        record = default;
        if (_stopped != PcapStatus.Ok)
        {
            return _stopped;
        }

        Span<byte> recordHeader = stackalloc byte[PcapFileHeader.RecordHeaderLength];
        int read = _stream.ReadAtLeast(recordHeader, recordHeader.Length, throwOnEndOfStream: false);
        if (read == 0)
        {
            return _stopped = PcapStatus.End;
        }

        if (read < recordHeader.Length)
        {
            return _stopped = PcapStatus.TruncatedRecordHeader;
        }

        var status = Header.TryParseRecordHeader(recordHeader, out uint seconds, out uint nanoseconds, out int captured, out uint original);
        if (status != PcapStatus.Ok)
        {
            return _stopped = status;
        }

        if (captured > _buffer.Length)
        {
            _buffer = new byte[Math.Max(captured, _buffer.Length * 2)];
        }

        read = _stream.ReadAtLeast(_buffer.AsSpan(0, captured), captured, throwOnEndOfStream: false);
        if (read < captured)
        {
            return _stopped = PcapStatus.TruncatedRecordData;
        }

        var frame = Header.StripFcs(_buffer.AsSpan(0, captured), original);
        _number++;
        record = new PcapRecord(_number, _offset, seconds, nanoseconds, original, frame, LinkType);
        _offset += PcapFileHeader.RecordHeaderLength + captured;
        return PcapStatus.Ok;
    }

    public void Dispose()
    {
        if (_ownsStream)
        {
            _stream.Dispose();
        }
    }
}
