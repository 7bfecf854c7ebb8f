using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>MPTCP sockets for tests: .NET refuses IPPROTO_MPTCP in <c>new Socket</c>, so socket(2) and a SafeSocketHandle.</summary>
internal static partial class MptcpTestSockets
{
    private const int IpProtoMptcp = 262;
    private const int SolMptcp = 284;
    private const int MptcpInfo = 1;

    public static Socket Create(AddressFamily family)
    {
        var fd = NativeSocket(family == AddressFamily.InterNetworkV6 ? 10 : 2, 1 /* SOCK_STREAM */, IpProtoMptcp);
        if (fd < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        return new Socket(new SafeSocketHandle(fd, ownsHandle: true));
    }

    /// <summary>mptcp_info.mptcpi_subflows: subflows beyond the initial one; null when the socket fell back to TCP.</summary>
    public static int? AdditionalSubflows(Socket socket)
    {
        var info = new byte[256];
        try
        {
            socket.GetRawSocketOption(SolMptcp, MptcpInfo, info);
        }
        catch (SocketException)
        {
            return null;
        }

        return info[0];
    }

    [DllImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static extern int NativeSocket(int domain, int type, int protocol);
}
