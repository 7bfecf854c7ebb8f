namespace ProxySelection.Wire.Pcap;

/// <summary>The pcap link types this reader understands (tcpdump.org LINKTYPE_* values).</summary>
public enum PcapLinkType : uint
{
    Ethernet = 1,
    Raw = 101,
    LinuxCooked = 113,
    RawIPv4 = 228,
    RawIPv6 = 229,
    LinuxCookedV2 = 276,
}
