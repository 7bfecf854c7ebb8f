namespace ProxySelection.Relay;

/// <summary>The transport a socket speaks: plain TCP or Multipath TCP (IPPROTO_MPTCP).</summary>
public enum TransportProtocol
{
    Tcp,
    Mptcp,
}
