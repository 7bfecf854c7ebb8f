namespace ProxySelection.Wire;

/// <summary>Why a packet or option did not parse. <see cref="None"/> means success.</summary>
public enum WireError
{
    None = 0,
    Truncated,
    BadIpVersion,
    BadIhl,
    BadTotalLength,
    NotTcp,
    BadDataOffset,
    BadOptionLength,
    OptionRunsPastHeader,
    BadMptcpLength,
    UnknownMptcpSubtype,
    OptionSpaceExceeded,
    BadChecksum,
    ExtensionHeaderLoop,
}
