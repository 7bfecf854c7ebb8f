namespace ProxySelection.Wire;

/// <summary>Why a packet or option did not parse or could not be written. <see cref="None"/> means success.</summary>
public enum WireError
{
    None = 0,
    /// <summary>The buffer ends before the structure it must hold.</summary>
    Truncated,
    /// <summary>The IP version nibble is neither 4 nor 6.</summary>
    BadIpVersion,
    /// <summary>IPv4 IHL below 5.</summary>
    BadIhl,
    /// <summary>IPv4 total length below the header length, or longer than the buffer.</summary>
    BadTotalLength,
    /// <summary>The packet does not carry TCP (or the IPv6 chain ends without reaching it).</summary>
    NotTcp,
    /// <summary>TCP data offset below 5 or beyond the segment.</summary>
    BadDataOffset,
    /// <summary>A TCP option length is 0 or 1, or does not fit the option's kind.</summary>
    BadOptionLength,
    /// <summary>A TCP option (or its length byte) runs past the end of the TCP header.</summary>
    OptionRunsPastHeader,
    /// <summary>An MPTCP option's length does not fit its subtype (RFC 8684 section 3).</summary>
    BadMptcpLength,
    /// <summary>An MPTCP subtype RFC 8684 does not define (9..14).</summary>
    UnknownMptcpSubtype,
    /// <summary>The TCP option space (40 bytes, data offset 15) would overflow.</summary>
    OptionSpaceExceeded,
    /// <summary>A checksum does not verify.</summary>
    BadChecksum,
    /// <summary>The IPv6 extension header chain is longer than the walk allows.</summary>
    ExtensionHeaderLoop,
    /// <summary>The packet is an IP fragment; TCP options are only handled in unfragmented packets.</summary>
    Fragmented,
    /// <summary>The destination buffer is too small for what must be written.</summary>
    BufferTooSmall,
    /// <summary>An argument handed to a writer is outside what the wire format can carry.</summary>
    BadArgument,
    /// <summary>An accessor for one MPTCP subtype was used on an option of another subtype.</summary>
    WrongSubtype,
    /// <summary>No option of the requested kind or at the requested offset.</summary>
    OptionNotFound,
}
