using System.Net;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Wire.Tests.MpProxy;

/// <summary>Fixed keys and flows shared by the MP_PROXY tests and the spec's test vectors (spec Appendix A).</summary>
internal static class MpProxyTestData
{
    /// <summary>Key id 1: the 32 bytes 0x00..0x1f.</summary>
    public static byte[] Key1 { get; } = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();

    /// <summary>Key id 2: the 32 bytes 0x20..0x3f.</summary>
    public static byte[] Key2 { get; } = Enumerable.Range(0x20, 32).Select(i => (byte)i).ToArray();

    public static MpProxyFlow SynV4 { get; } = MpProxyFlow.ForSyn(
        IPAddress.Parse("198.18.0.1"), IPAddress.Parse("198.19.0.2"), 40000, 443, 0x01020304);

    public static MpProxyFlow SynAckV4 { get; } = SynV4.WithSynAck(0xA0B0C0D0);

    public static MpProxyFlow SynV6 { get; } = MpProxyFlow.ForSyn(
        IPAddress.Parse("2001:db8::1"), IPAddress.Parse("2001:db8:1::2"), 40000, 443, 0x01020304);

    public static MpProxyFlow SynAckV6 { get; } = SynV6.WithSynAck(0xA0B0C0D0);

    public static MpProxyKeyRing Ring() => new(1, Key1);

    public static MpProxyOption Signed(MpProxyOption option, in MpProxyFlow flow)
    {
        Ring().Sign(ref option, flow);
        return option;
    }

    public static byte[] Bytes(in MpProxyOption option)
    {
        var bytes = new byte[option.WireLength];
        MpProxyCodec.Write(bytes, option);
        return bytes;
    }
}
