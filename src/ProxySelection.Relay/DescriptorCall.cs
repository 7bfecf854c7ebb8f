using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ProxySelection.Relay;

/// <summary>A non-blocking syscall straight on a socket's descriptor (recv, splice), outside .NET's socket layer.</summary>
internal static class DescriptorCall
{
    /// <summary>
    /// Runs <paramref name="call"/> with the descriptor held open against a concurrent close (an abort), retrying EINTR.
    /// Returns its non-negative result, or -1 for EAGAIN (nothing to do now).
    /// </summary>
    /// <exception cref="SocketException">any other errno.</exception>
    /// <exception cref="ObjectDisposedException">the socket was closed before the call.</exception>
    public static nint Run<TState>(SafeHandle socket, TState state, Func<nint, TState, nint> call)
    {
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            nint fd = socket.DangerousGetHandle();
            while (true)
            {
                nint result = call(fd, state);
                if (result >= 0)
                {
                    return result;
                }
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Native.EAgain)
                {
                    return -1;
                }
                if (errno != Native.EIntr)
                {
                    throw new SocketException((int)SocketErrors.FromErrno(errno));
                }
            }
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }
}
