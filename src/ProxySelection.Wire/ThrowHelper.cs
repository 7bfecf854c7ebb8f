using System.Diagnostics.CodeAnalysis;

namespace ProxySelection.Wire;

/// <summary>Throw sites kept out of line so the hot paths stay small and inlinable.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowWireException(WireError error, int offset) =>
        throw new WireException(error, offset, Describe(error));

    [DoesNotReturn]
    public static T ThrowWireException<T>(WireError error, int offset) =>
        throw new WireException(error, offset, Describe(error));

    /// <summary>Throws when <paramref name="error"/> is not <see cref="WireError.None"/>.</summary>
    public static void ThrowIfError(WireError error, int offset = 0)
    {
        if (error != WireError.None)
        {
            ThrowWireException(error, offset);
        }
    }

    public static string Describe(WireError error) => error switch
    {
        WireError.None => "no error",
        WireError.Truncated => "buffer ends inside the structure",
        WireError.BadIpVersion => "IP version is neither 4 nor 6",
        WireError.BadIhl => "IPv4 header length below 20 bytes",
        WireError.BadTotalLength => "IP length does not fit the header or the buffer",
        WireError.NotTcp => "not a TCP packet",
        WireError.BadDataOffset => "TCP data offset below 5 or past the segment",
        WireError.BadOptionLength => "TCP option length invalid",
        WireError.OptionRunsPastHeader => "TCP option runs past the TCP header",
        WireError.BadMptcpLength => "MPTCP option length does not fit its subtype",
        WireError.UnknownMptcpSubtype => "unknown MPTCP subtype",
        WireError.OptionSpaceExceeded => "TCP option space (40 bytes) exceeded",
        WireError.BadChecksum => "checksum does not verify",
        WireError.ExtensionHeaderLoop => "IPv6 extension header chain too long",
        WireError.Fragmented => "IP fragment",
        WireError.BufferTooSmall => "destination buffer too small",
        WireError.BadArgument => "value cannot be encoded",
        WireError.WrongSubtype => "MPTCP option is of another subtype",
        WireError.OptionNotFound => "option not found",
        _ => error.ToString(),
    };
}
