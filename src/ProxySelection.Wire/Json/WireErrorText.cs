using ProxySelection.Wire;

namespace ProxySelection.Wire.Json;

/// <summary>Reasons printed next to a <see cref="WireError"/> in decode error objects.</summary>
public static class WireErrorText
{
    public static string Describe(WireError error) => error switch
    {
        WireError.Truncated => "packet ends before the header or option it must hold",
        WireError.BadIpVersion => "IP version is neither 4 nor 6",
        WireError.BadIhl => "IPv4 header length (IHL) below 5",
        WireError.BadTotalLength => "IP length field does not fit the header or the packet",
        WireError.NotTcp => "packet does not carry TCP",
        WireError.BadDataOffset => "TCP data offset below 5 or beyond the segment",
        WireError.BadOptionLength => "TCP option length does not fit its kind",
        WireError.OptionRunsPastHeader => "TCP option runs past the end of the TCP header",
        WireError.BadMptcpLength => "MPTCP option length does not fit its subtype",
        WireError.UnknownMptcpSubtype => "MPTCP subtype not defined by RFC 8684",
        WireError.ExtensionHeaderLoop => "IPv6 extension header chain too long",
        WireError.Fragmented => "IP fragment: TCP options are only decoded in unfragmented packets",
        _ => error.ToString(),
    };
}
