using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ProxySelection.Engine.Hook;

/// <summary>What the kernel says of a socket, asked directly rather than through .NET's completion of an operation.</summary>
internal static partial class SocketState
{
    /// <summary>
    /// getpeername(2) succeeds once the connection is established (inet_getname answers ENOTCONN in SYN_SENT), for TCP and
    /// MPTCP sockets alike. Unlike SO_ERROR it reads nothing away from the pending connect's own completion.
    /// </summary>
    public static unsafe bool HasPeer(Socket socket)
    {
        try
        {
            byte* address = stackalloc byte[128];
            int length = 128;
            return getpeername(socket.SafeHandle, address, &length) == 0;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int getpeername(SafeHandle socket, byte* address, int* length);
}
